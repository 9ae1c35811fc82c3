"""Conversations over REST: open, list, page messages, send; canned replies for staff.

Thin adapters over the hub's chat service; sends go through the hub so sockets hear of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from api.auth import authenticated, principal_of, requires
from api.keys import HUB
from api.openapi import operation
from api.requests import json_response, path_uuid, read_json, read_query
from core.ids import new_id_str
from core.permissions import Permission
from db.models.chat import CannedReply
from hub.chat import ConversationView, MessageView

TAGS = ("chat",)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenRequest(Strict):
    subject: str = Field(default="", max_length=200)
    body: str | None = Field(default=None, description="A first message, if any")
    client_msg_id: str | None = Field(default=None, max_length=64)


class AttachmentRef(Strict):
    file_id: UUID


class SendRequest(Strict):
    client_msg_id: str = Field(min_length=1, max_length=64)
    body: str
    attachments: list[AttachmentRef] = Field(
        default_factory=list, max_length=10, description="Files the sender may read"
    )


class HistoryQuery(BaseModel):
    before_seq: int | None = Field(default=None, ge=1)
    limit: int = Field(default=50, ge=1, le=100)


class MessageBody(BaseModel):
    id: UUID
    conversation_id: UUID
    seq: int
    sender_id: UUID | None
    kind: str
    body: str
    attachments: list[dict[str, Any]]
    created_at: datetime
    client_msg_id: str | None


class ConversationBody(BaseModel):
    id: UUID
    customer_id: UUID
    assignee_id: UUID | None
    subject: str
    status: str
    last_seq: int
    created_at: datetime
    last_message_at: datetime | None


class Opened(BaseModel):
    conversation: ConversationBody
    message: MessageBody | None


class ConversationList(BaseModel):
    items: list[ConversationBody]


class MessagePage(BaseModel):
    items: list[MessageBody]
    has_more: bool


class Sent(BaseModel):
    message: MessageBody
    duplicate: bool


class CannedCreate(Strict):
    shortcut: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_-]+$")
    title: str = Field(min_length=1, max_length=120)
    body: str = Field(min_length=1, max_length=10_000)


class CannedBody(BaseModel):
    id: UUID
    shortcut: str
    title: str
    body: str


class CannedList(BaseModel):
    items: list[CannedBody]


class CannedQuery(BaseModel):
    q: str = Field(default="", max_length=40)


def _conversation(view: ConversationView) -> ConversationBody:
    return ConversationBody.model_validate(view.wire())


def _message(view: MessageView) -> MessageBody:
    return MessageBody.model_validate(view.wire())


def _conversation_id(request: web.Request) -> UUID:
    return path_uuid(request, "conversation_id", not_found="conversation_not_found")


@authenticated()
@operation(
    summary="Open a support conversation (customers), optionally with a first message",
    tags=TAGS,
    request=OpenRequest,
    responses={201: Opened},
    auth=True,
)
async def open_conversation(request: web.Request) -> web.Response:
    body = await read_json(request, OpenRequest)
    principal = principal_of(request)
    hub = request.app[HUB]
    view = await hub.chat.open(principal=principal, subject=body.subject)
    await hub.opened(principal, view)
    message = None
    if body.body is not None:
        sent = await hub.chat.send(
            principal=principal,
            conversation_id=view.id,
            client_msg_id=body.client_msg_id or new_id_str(),
            body=body.body,
        )
        await hub.deliver(sent)
        view, message = sent.conversation, _message(sent.message)
    return json_response(Opened(conversation=_conversation(view), message=message), status=201)


@authenticated()
@operation(
    summary="Your conversations (customers) or those assigned to you (staff)",
    tags=TAGS,
    responses={200: ConversationList},
    auth=True,
)
async def list_conversations(request: web.Request) -> web.Response:
    views = await request.app[HUB].chat.list_for(principal_of(request))
    return json_response(ConversationList(items=[_conversation(v) for v in views]))


@requires(Permission.CHAT_READ_ANY)
@operation(
    summary="The support queue: unassigned first, then the other unresolved",
    tags=TAGS,
    responses={200: ConversationList},
    auth=True,
)
async def queue(request: web.Request) -> web.Response:
    views = await request.app[HUB].chat.queue(principal=principal_of(request))
    return json_response(ConversationList(items=[_conversation(v) for v in views]))


@authenticated()
@operation(
    summary="A page of messages, newest last; page back with before_seq",
    tags=TAGS,
    responses={200: MessagePage},
    auth=True,
)
async def messages(request: web.Request) -> web.Response:
    query = read_query(request, HistoryQuery)
    page = await request.app[HUB].chat.history(
        principal=principal_of(request),
        conversation_id=_conversation_id(request),
        before_seq=query.before_seq,
        limit=query.limit,
    )
    return json_response(
        MessagePage(items=[_message(m) for m in page.messages], has_more=page.has_more)
    )


@authenticated()
@operation(
    summary="Send a message (idempotent on client_msg_id)",
    tags=TAGS,
    request=SendRequest,
    responses={201: Sent, 200: Sent},
    auth=True,
)
async def send(request: web.Request) -> web.Response:
    body = await read_json(request, SendRequest)
    hub = request.app[HUB]
    sent = await hub.chat.send(
        principal=principal_of(request),
        conversation_id=_conversation_id(request),
        client_msg_id=body.client_msg_id,
        body=body.body,
        attachments=[a.file_id for a in body.attachments],
    )
    if sent.created:
        await hub.deliver(sent)
    status = 201 if sent.created else 200
    return json_response(
        Sent(message=_message(sent.message), duplicate=not sent.created), status=status
    )


def _canned(row: CannedReply) -> CannedBody:
    return CannedBody(id=row.id, shortcut=row.shortcut, title=row.title, body=row.body)


@requires(Permission.CHAT_READ_ANY)
@operation(summary="Canned replies", tags=TAGS, responses={200: CannedList}, auth=True)
async def list_canned(request: web.Request) -> web.Response:
    query = read_query(request, CannedQuery)
    rows = await request.app[HUB].chat.canned_replies(
        principal=principal_of(request), query=query.q
    )
    return json_response(CannedList(items=[_canned(r) for r in rows]))


@requires(Permission.CHAT_ASSIGN)
@operation(
    summary="Add a canned reply",
    tags=TAGS,
    request=CannedCreate,
    responses={201: CannedBody},
    auth=True,
)
async def create_canned(request: web.Request) -> web.Response:
    body = await read_json(request, CannedCreate)
    row = await request.app[HUB].chat.add_canned_reply(
        principal=principal_of(request), shortcut=body.shortcut, title=body.title, body=body.body
    )
    return json_response(_canned(row), status=201)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/v1/conversations", open_conversation)
    r.add_get("/api/v1/conversations", list_conversations)
    r.add_get("/api/v1/conversations/queue", queue)
    r.add_get("/api/v1/conversations/{conversation_id}/messages", messages)
    r.add_post("/api/v1/conversations/{conversation_id}/messages", send)
    r.add_get("/api/v1/canned-replies", list_canned)
    r.add_post("/api/v1/canned-replies", create_canned)
