"""The Socket.IO namespace: authenticate at the handshake, then one handler per client event.

Each handler is an adapter: parse the payload, check access, call one service, emit, ack.
Events arrive as `name, payload`; the ack is the handler's return value. An unknown event, a
malformed payload or a refused action is an error ack; the connection stays up.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import socketio
from pydantic import BaseModel, ConfigDict, Field

from core.errors import AppError, Forbidden, NotFound, ValidationFailed
from core.logs import get_logger
from core.permissions import Permission, Role
from core.principal import Principal
from db.models.chat import ConversationStatus
from db.principals import principal_from_access_token
from hub.chat import may_read_any
from hub.dashboard import DASHBOARD_TYPES, followed_types, set_followed_types
from hub.presence import Activity, Status
from hub.protocol import from_app_error, ok, parse
from hub.rooms import (
    DASHBOARD,
    STAFF,
    conversation_room,
    dashboard_room,
    parse_room,
    user_room,
)

if TYPE_CHECKING:
    from hub.server import Hub

log = get_logger(__name__)

TYPING_INTERVAL = 2.0  # seconds between two relayed typing events of one user in one chat
TYPING_MEMORY = 10_000  # (user, conversation) pairs remembered for the throttle


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenPayload(Payload):
    subject: str = Field(default="", max_length=200)


class AttachmentRef(Payload):
    file_id: uuid.UUID


class SendPayload(Payload):
    conversation_id: uuid.UUID
    client_msg_id: str = Field(min_length=1, max_length=64)
    body: str
    attachments: list[AttachmentRef] = Field(default_factory=list, max_length=10)


class TypingPayload(Payload):
    conversation_id: uuid.UUID
    typing: bool


class ReadPayload(Payload):
    conversation_id: uuid.UUID
    seq: int = Field(ge=0)


class HistoryPayload(Payload):
    conversation_id: uuid.UUID
    before_seq: int | None = Field(default=None, ge=1)
    limit: int = Field(default=50, ge=1, le=100)


class SyncPayload(Payload):
    conversations: dict[uuid.UUID, int] = Field(default_factory=dict, max_length=500)
    notifications_after: uuid.UUID | None = None


class AckPayload(Payload):
    ids: list[uuid.UUID] = Field(max_length=500)


class PresencePayload(Payload):
    status: Literal["online", "away", "busy"] | None = None
    activity: Literal["active", "idle"] | None = None


class RoomPayload(Payload):
    room: str = Field(min_length=1, max_length=100)


class AssignPayload(Payload):
    conversation_id: uuid.UUID
    assignee_id: uuid.UUID | Literal["auto"] | None


class StatusPayload(Payload):
    conversation_id: uuid.UUID
    status: ConversationStatus


class FollowPayload(Payload):
    types: list[str] = Field(max_length=50)


class EmptyPayload(Payload):
    pass


Handler = Callable[[str, Principal, Any], Awaitable[dict[str, Any]]]


class Gateway(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, hub: Hub) -> None:
        super().__init__("/")
        self.hub = hub
        self._typing_sent: dict[tuple[str, str], float] = {}
        self._handlers: dict[str, Handler] = {
            "chat:open": self.chat_open,
            "chat:send": self.chat_send,
            "chat:typing": self.chat_typing,
            "chat:read": self.chat_read,
            "chat:history": self.chat_history,
            "chat:assign": self.chat_assign,
            "chat:status": self.chat_status,
            "chat:queue": self.chat_queue,
            "sync": self.sync,
            "notifications:ack": self.notifications_ack,
            "presence:set": self.presence_set,
            "presence:list": self.presence_list,
            "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe,
            "dashboard:follow": self.dashboard_follow,
        }

    # -- dispatch ----------------------------------------------------------------------------

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event == "connect":
            return await self.on_connect(*args)
        if event == "disconnect":
            return await self.on_disconnect(*args)
        sid = args[0]
        payload = args[1] if len(args) > 1 else None
        handler = self._handlers.get(event)
        metrics = self.hub.metrics
        if handler is None:
            metrics.events_in.labels("unknown", "error").inc()
            return from_app_error(NotFound("unknown_event", f"No such event: {event[:50]}"))
        try:
            principal = await self._principal(sid)
            result = await handler(sid, principal, payload)
        except AppError as exc:
            metrics.events_in.labels(event, "error").inc()
            return from_app_error(exc)
        except Exception:
            metrics.events_in.labels(event, "crash").inc()
            log.exception("hub.event_failed", socket_event=event)
            return from_app_error(AppError())
        metrics.events_in.labels(event, "ok").inc()
        return result

    async def _principal(self, sid: str) -> Principal:
        session = await self.get_session(sid)
        principal: Principal = session["principal"]
        return principal

    async def emit_room(
        self, event: str, data: Any, *, room: str, skip_sid: str | None = None
    ) -> None:
        await self.emit(event, data, room=room, skip_sid=skip_sid)
        self.hub.metrics.events_out.labels(event).inc()

    # -- connection --------------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise refuse("unauthorized", "An access token is required")
        try:
            principal = await principal_from_access_token(token, keys=self.hub.keys)
        except AppError as exc:
            raise refuse(exc.code, exc.message) from None
        conn_id = uuid.uuid4().hex
        await self.save_session(sid, {"principal": principal, "conn_id": conn_id})
        await self.enter_room(sid, user_room(principal.user_id))
        if principal.is_staff:
            await self.enter_room(sid, STAFF)
        for conversation in await self.hub.chat.list_for(principal):
            await self.enter_room(sid, conversation_room(conversation.id))
        if isinstance(auth, dict) and auth.get("reconnect"):
            self.hub.metrics.reconnects.inc()
        self.hub.metrics.connected.inc()
        await self.hub.connected(sid, principal, conn_id)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        session = await self.get_session(sid)
        principal: Principal | None = session.get("principal")
        if principal is None:
            return
        self.hub.metrics.connected.dec()
        await self.hub.disconnected(sid, principal, session["conn_id"])

    # -- chat --------------------------------------------------------------------------------

    async def chat_open(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        body = parse(OpenPayload, payload)
        conversation = await self.hub.chat.open(principal=principal, subject=body.subject)
        await self.hub.opened(principal, conversation)
        return ok(conversation=conversation.wire())

    async def chat_send(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        body = parse(SendPayload, payload)
        sent = await self.hub.chat.send(
            principal=principal,
            conversation_id=body.conversation_id,
            client_msg_id=body.client_msg_id,
            body=body.body,
            attachments=[a.file_id for a in body.attachments],
        )
        if sent.created:
            await self.hub.deliver(sent)
        return ok(message=sent.message.wire(), duplicate=not sent.created)

    async def chat_typing(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        body = parse(TypingPayload, payload)
        await self.hub.chat.conversation_for(principal, body.conversation_id)
        key = (str(principal.user_id), str(body.conversation_id))
        now = time.monotonic()
        if body.typing and now - self._typing_sent.get(key, 0.0) < TYPING_INTERVAL:
            return ok(relayed=False)  # throttled: the last "typing" is still fresh
        if len(self._typing_sent) >= TYPING_MEMORY:
            self._typing_sent.clear()  # at worst one extra "typing" relayed per pair
        self._typing_sent[key] = now if body.typing else 0.0
        await self.emit_room(
            "chat:typing",
            {
                "conversation_id": str(body.conversation_id),
                "user_id": str(principal.user_id),
                "typing": body.typing,
            },
            room=conversation_room(body.conversation_id),
            skip_sid=sid,
        )
        return ok(relayed=True)

    async def chat_read(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        body = parse(ReadPayload, payload)
        receipt = await self.hub.chat.mark_read(
            principal=principal, conversation_id=body.conversation_id, seq=body.seq
        )
        data = {
            "conversation_id": str(receipt.conversation_id),
            "user_id": str(receipt.user_id),
            "seq": receipt.seq,
        }
        await self.emit_room("chat:read", data, room=conversation_room(body.conversation_id))
        return ok(seq=receipt.seq)

    async def chat_history(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        body = parse(HistoryPayload, payload)
        page = await self.hub.chat.history(
            principal=principal,
            conversation_id=body.conversation_id,
            before_seq=body.before_seq,
            limit=body.limit,
        )
        return ok(messages=[m.wire() for m in page.messages], has_more=page.has_more)

    async def chat_assign(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        body = parse(AssignPayload, payload)
        assignee = body.assignee_id
        if assignee == "auto":
            assignee = await self.hub.chat.pick_assignee(candidates=await self.hub.online_staff())
            if assignee is None:
                raise ValidationFailed("no_staff_online", "Nobody who can take it is online")
        view = await self.hub.chat.assign(
            actor=principal, conversation_id=body.conversation_id, assignee_id=assignee
        )
        await self.hub.announce_conversation(view)
        return ok(conversation=view.wire())

    async def chat_status(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        body = parse(StatusPayload, payload)
        view = await self.hub.chat.set_status(
            actor=principal, conversation_id=body.conversation_id, status=body.status
        )
        await self.hub.announce_conversation(view)
        return ok(conversation=view.wire())

    async def chat_queue(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        parse(EmptyPayload, payload if payload is not None else {})
        views = await self.hub.chat.queue(principal=principal)
        return ok(conversations=[v.wire() for v in views])

    # -- offline sync ------------------------------------------------------------------------

    async def sync(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        body = parse(SyncPayload, payload)
        known = dict(body.conversations)
        if principal.role is Role.CUSTOMER or not may_read_any(principal):
            # Conversations the client has not heard of yet start from nothing.
            for conversation in await self.hub.chat.list_for(principal):
                known.setdefault(conversation.id, 0)
        replay: dict[str, Any] = {}
        replayed = 0
        for conversation_id, last_seq in known.items():
            try:
                page = await self.hub.chat.after(
                    principal=principal, conversation_id=conversation_id, after_seq=last_seq
                )
            except NotFound:
                replay[str(conversation_id)] = {"error": "conversation_not_found"}
                continue
            await self.enter_room(sid, conversation_room(conversation_id))
            replay[str(conversation_id)] = {
                "messages": [m.wire() for m in page.messages],
                "has_more": page.has_more,
            }
            replayed += len(page.messages)
        notifications, more = await self.hub.inbox.after(
            user_id=principal.user_id, after_id=body.notifications_after
        )
        self.hub.metrics.sync_replays.labels("message").inc(replayed)
        self.hub.metrics.sync_replays.labels("notification").inc(len(notifications))
        return ok(
            conversations=replay,
            notifications=[n.wire() for n in notifications],
            notifications_has_more=more,
        )

    async def notifications_ack(
        self, sid: str, principal: Principal, payload: Any
    ) -> dict[str, Any]:
        body = parse(AckPayload, payload)
        count = await self.hub.inbox.mark_delivered(user_id=principal.user_id, ids=body.ids)
        if count:
            await self.hub.announce_unread(principal.user_id)
        return ok(delivered=count)

    # -- presence ----------------------------------------------------------------------------

    async def presence_list(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        """Staff: who is online right now (the dashboard's starting point)."""
        if not principal.is_staff:
            raise Forbidden("staff_only", "Only staff see who is online")
        return ok(users=await self.hub.presence_snapshot())

    async def presence_set(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        body = parse(PresencePayload, payload)
        if body.status is not None and not principal.is_staff:
            raise Forbidden("staff_only", "Only staff set a status")
        state = await self.hub.set_presence(
            principal,
            status=Status(body.status) if body.status else None,
            activity=Activity(body.activity) if body.activity else None,
        )
        return ok(presence=state.wire())

    # -- rooms -------------------------------------------------------------------------------

    async def subscribe(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        body = parse(RoomPayload, payload)
        kind, ident = parse_room(body.room)
        if kind == "conversation" and ident:
            conversation_id = _uuid(ident, "conversation_not_found")
            await self.hub.chat.conversation_for(principal, conversation_id)
            await self.enter_room(sid, conversation_room(conversation_id))
            return ok(room=conversation_room(conversation_id))
        if kind == DASHBOARD and ident is None:
            if not principal.can(Permission.DASHBOARD_READ):
                raise Forbidden("forbidden", "Staff only")
            types = await followed_types(principal)
            await self.enter_room(sid, DASHBOARD)
            for event_type in DASHBOARD_TYPES:
                room = dashboard_room(event_type)
                if event_type in types:
                    await self.enter_room(sid, room)
                else:
                    await self.leave_room(sid, room)
            return ok(room=DASHBOARD, types=sorted(types))
        if kind == "file" and ident:
            await self.hub.authorize_file_room(principal, ident)
            await self.enter_room(sid, body.room)
            return ok(room=body.room)
        raise NotFound("unknown_room", "No such room")

    async def unsubscribe(self, sid: str, principal: Principal, payload: Any) -> dict[str, Any]:
        body = parse(RoomPayload, payload)
        kind, _ = parse_room(body.room)
        if body.room.startswith("user:") or body.room == STAFF:
            raise Forbidden("forbidden", "This room is not yours to leave")
        await self.leave_room(sid, body.room)
        if kind == DASHBOARD:
            for event_type in DASHBOARD_TYPES:
                await self.leave_room(sid, dashboard_room(event_type))
        return ok(room=body.room)

    async def dashboard_follow(
        self, sid: str, principal: Principal, payload: Any
    ) -> dict[str, Any]:
        body = parse(FollowPayload, payload)
        types = await set_followed_types(principal, body.types)
        if DASHBOARD in self.rooms(sid):
            await self.subscribe(sid, principal, {"room": DASHBOARD})
        return ok(types=sorted(types))


def _uuid(value: str, code: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(code, "Not found") from None


def refuse(code: str, message: str) -> socketio.exceptions.ConnectionRefusedError:
    """A handshake refusal: the client's `connect_error` gets `{message, data: {code}}`."""
    return socketio.exceptions.ConnectionRefusedError(message, {"code": code})
