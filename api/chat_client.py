"""`ideinstein chat`: a terminal chat client, for trying the hub from two terminals.

Signs in over REST, connects to the Socket.IO gateway with the access token, then opens a
conversation (customers) or joins one (staff), prints what arrives and sends each typed line.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import aiohttp
import socketio


async def _sign_in(url: str, email: str, password: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/api/v1/auth/login", json={"email": email, "password": password}
        ) as response,
    ):
        body = await response.json()
        if response.status != 200:
            raise SystemExit(f"sign-in failed: {body['error']['code']}")
        token: str = body["access_token"]
        return token


def _show(message: dict[str, Any]) -> None:
    who = "system" if message["kind"] == "system" else (message["sender_id"] or "?")[:8]
    print(f"[{message['seq']}] {who}: {message['body']}", flush=True)


async def _lines() -> asyncio.Queue[str | None]:
    """Standard input, line by line, without blocking the loop."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    loop.run_in_executor(None, read)
    return queue


async def run_chat(
    *, url: str, email: str, password: str, conversation: str | None, subject: str
) -> int:
    token = await _sign_in(url, email, password)
    sio = socketio.AsyncClient(reconnection=True)
    sio.on("chat:message", _show)
    sio.on(
        "chat:typing",
        lambda data: (
            print(f"  ({data['user_id'][:8]} is typing)", flush=True) if data["typing"] else None
        ),
    )
    await sio.connect(url, auth={"token": token}, transports=["websocket"])
    try:
        if conversation is None:
            opened = await sio.call("chat:open", {"subject": subject})
            if not opened["ok"]:
                raise SystemExit(f"cannot open a conversation: {opened['error']['code']}")
            conversation = opened["conversation"]["id"]
            print(f"conversation {conversation} (staff join with --conversation {conversation})")
        else:
            joined = await sio.call("subscribe", {"room": f"conversation:{conversation}"})
            if not joined["ok"]:
                raise SystemExit(f"cannot join: {joined['error']['code']}")
            history = await sio.call("chat:history", {"conversation_id": conversation, "limit": 20})
            for message in history["messages"]:
                _show(message)
        lines = await _lines()
        while (line := await lines.get()) is not None:
            if not line.strip():
                continue
            ack = await sio.call(
                "chat:send",
                {"conversation_id": conversation, "client_msg_id": uuid.uuid4().hex, "body": line},
            )
            if not ack["ok"]:
                print(f"  not sent: {ack['error']['message']}", flush=True)
    finally:
        await sio.disconnect()
    return 0
