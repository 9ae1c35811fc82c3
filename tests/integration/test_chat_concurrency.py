"""Concurrent sends into one conversation, on SQLite (where a plain message is stored by one
`BEGIN IMMEDIATE` transaction, run in one hop on aiosqlite's thread) and PostgreSQL (one
atomic statement): numbers 1..N without gaps or repeats, a retried client_msg_id stores
nothing, exactly one send reopens a resolved conversation, and a stranger's send writes
nothing."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from core.bus.memory import MemoryBus
from core.errors import NotFound
from core.ids import new_id_str
from core.permissions import Role
from core.principal import Principal
from db.connection import open_database
from db.models.chat import Conversation, ConversationStatus, Message
from db.models.identity import User
from hub.chat import ChatService, ConversationView, MessageView, Sent

SENDS = 40
RETRIES = 8


async def _principal(role: Role = Role.CUSTOMER) -> Principal:
    user = await User.create(email=f"{role.value}-{new_id_str()[-12:]}@example.com", role=role)
    return Principal(user_id=user.id, role=role)


async def test_concurrent_sends_are_numbered_without_gaps(migrated_database_url: str) -> None:
    chat = ChatService(bus=MemoryBus(), max_body=1000)
    async with open_database(migrated_database_url):
        customer = await _principal()
        staff = await _principal(Role.EDITOR)
        conversation = await chat.open(principal=customer, subject="Bracket")
        cid = conversation.id

        async def send(who: Principal, n: int) -> Sent:
            return await chat.send(
                principal=who, conversation_id=cid, client_msg_id=f"m{n}", body=f"message {n}"
            )

        sent = await asyncio.gather(
            *(send(customer if n % 2 else staff, n) for n in range(SENDS)),
            *(send(customer if n % 2 else staff, n) for n in range(RETRIES)),  # retries
        )
        created = [s for s in sent if s.created]
        numbers = sorted(m.seq for m in await Message.filter(conversation_id=cid))

        assert len(created) == SENDS
        assert numbers == list(range(1, SENDS + 1))
        for n in range(RETRIES):
            same = [s for s in sent if s.message.client_msg_id == f"m{n}"]
            assert len({s.message.id for s in same}) == 1  # the retry got the stored message
        # What a send answers is what was stored (read back through the ORM).
        for s in created:
            stored = await Message.get(id=s.message.id)
            assert MessageView.of(stored) == s.message
        last = max(created, key=lambda s: s.message.seq)
        row = await Conversation.get(id=cid)
        assert row.last_seq == SENDS
        assert ConversationView.of(row) == last.conversation

        await chat.set_status(actor=staff, conversation_id=cid, status=ConversationStatus.RESOLVED)
        again = await asyncio.gather(*(send(customer, 1000 + n) for n in range(5)))
        assert [s.reopened for s in again].count(True) == 1
        assert {s.conversation.status for s in again} == {ConversationStatus.OPEN}

        stranger = await _principal()
        before = await Message.filter(conversation_id=cid).count()
        with pytest.raises(NotFound):
            await send(stranger, 2000)
        assert await Message.filter(conversation_id=cid).count() == before
        assert (await Conversation.get(id=cid)).last_seq == before  # no number used
        assert await Message.filter(sender_id=UUID(str(stranger.user_id))).count() == 0
