"""The hub on one node: the Socket.IO server, its services and its background work.

Several hub processes share rooms through `AsyncRedisManager` (Redis pub/sub) when `REDIS_URL`
is set; one embedded process uses the in-process manager. The database is the log: chat
messages and notifications are stored before they are emitted, and `sync` replays them, so a
lost pub/sub message delays a client but loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any, cast
from uuid import UUID

import socketio
from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from core.bus import Event, EventBus, Subscription
from core.errors import NotFound
from core.logs import get_logger
from core.permissions import STAFF_ROLES
from core.principal import Principal
from core.settings import Settings
from core.tokens import KeyRing
from db.models.chat import Conversation, Notification
from db.models.identity import User
from hub.chat import FANOUT_ERRORS, ChatService, ConversationView, Sent
from hub.dashboard import DASHBOARD_TYPES
from hub.email.queue import EmailQueue
from hub.fastio import FanoutMixin, LocalManager, orjson_module, stop_pings, tune
from hub.gateway import Gateway, refuse
from hub.metrics import HubMetrics
from hub.notify import Inbox
from hub.preferences import Channel, load_preferences
from hub.presence import Activity, PresenceState, PresenceStore, Status, create_presence_store
from hub.push import WebPushSender
from hub.rooms import STAFF, conversation_room, dashboard_room, file_room, user_room
from hub.router import NotificationRouter, create_claims
from hub.staff_alerts import ALERTS, StaffAlerts
from storage.file_access import check_can_read

# Bus events relayed to the `file:<id>` room, and the socket event each becomes.
FILE_ROOM_EVENTS: dict[str, str] = {
    "file.scanned": "file:scanned",
    "render.progress": "render:progress",
    "render.completed": "render:completed",
    "render.failed": "render:failed",
}

PRESENCE_LIST_LIMIT = 500
STAFF_OFFER_INTERVAL = 1.0  # seconds: at most ~2 queue updates per conversation per window

log = get_logger(__name__)

__all__ = ["Hub", "RedisClientManager", "refuse", "user_room"]


class RedisClientManager(socketio.AsyncRedisManager, FanoutMixin):  # type: ignore[misc]
    """python-socketio's Redis manager, plus the close it lacks: `AsyncServer.shutdown()`
    stops Engine.IO but leaves the manager's listener task and Redis connections open.
    Local delivery goes through `FanoutMixin` (hub/fastio.py)."""

    async def close(self) -> None:
        listener: asyncio.Task[None] | None = getattr(self, "thread", None)
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        pubsub = getattr(self, "pubsub", None)
        if pubsub is not None:
            await pubsub.aclose()
        redis = getattr(self, "redis", None)
        if redis is not None:
            await redis.aclose()


def create_client_manager(settings: Settings) -> socketio.AsyncManager:
    if settings.redis_url is None:
        return LocalManager()
    return RedisClientManager(
        settings.redis_url, channel=f"{settings.redis_prefix}socketio", json=orjson_module
    )


class Hub:
    def __init__(self, settings: Settings, *, keys: KeyRing, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.keys = keys
        self.metrics = HubMetrics(registry)
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=create_client_manager(settings),
            cors_allowed_origins=[settings.public_url, *settings.cors_allowed_origins],
            max_http_buffer_size=settings.max_request_bytes,
            logger=False,
            engineio_logger=False,
            json=orjson_module,
        )
        tune(self.sio)
        self.gateway = Gateway(self)
        self.sio.register_namespace(self.gateway)
        self._sids_by_user: dict[UUID, set[str]] = {}
        self._conns: dict[str, tuple[UUID, str]] = {}  # sid -> (user id, connection id)
        # conversation id -> the newest offer held back in its window (None: nothing held)
        self._held_offers: dict[UUID, ConversationView | None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscriptions: list[Subscription] = []
        self._started = False

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app, socketio_path="socket.io")

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(
        self,
        *,
        bus: EventBus,
        redis: Redis | None,
        push: WebPushSender | None = None,
        email: EmailQueue | None = None,
    ) -> None:
        self.bus = bus
        self.chat = ChatService(bus=bus, max_body=self.settings.chat_max_body_chars)
        self.inbox = Inbox(bus=bus)
        self.presence: PresenceStore = create_presence_store(
            redis=redis, prefix=self.settings.redis_prefix
        )
        for event_type in DASHBOARD_TYPES:
            self._subscriptions.append(await bus.subscribe(event_type, self._relay_dashboard))
        self._subscriptions.append(
            await bus.subscribe("notification.created", self._push_notification)
        )
        for event_type in ("notification.created", "notification.read"):
            self._subscriptions.append(await bus.subscribe(event_type, self._relay_unread))
        for event_type in FILE_ROOM_EVENTS:
            self._subscriptions.append(await bus.subscribe(event_type, self._relay_file))
        alerts = StaffAlerts(
            inbox=self.inbox, claims=create_claims(redis=redis, prefix=self.settings.redis_prefix)
        )
        for event_type in ALERTS:
            self._subscriptions.append(await bus.subscribe(event_type, alerts.on_event))
        if push is not None:
            router = NotificationRouter(
                presence=self.presence,
                push=push,
                claims=create_claims(redis=redis, prefix=self.settings.redis_prefix),
                email=email,
            )
            self._subscriptions.append(
                await bus.subscribe("notification.created", router.on_created)
            )
            self._subscriptions.append(await bus.subscribe("notification.read", router.on_read))
        self._spawn(self._heartbeat())
        self._spawn(self._sweep())
        self._started = True

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for subscription in self._subscriptions:
            await subscription.close()
        await self.sio.shutdown()
        await stop_pings(self.sio)
        if isinstance(self.sio.manager, RedisClientManager):
            await self.sio.manager.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connections and presence ------------------------------------------------------------

    def local_sids(self, user_id: UUID) -> list[str]:
        return sorted(self._sids_by_user.get(user_id, ()))

    async def connected(self, sid: str, principal: Principal, conn_id: str) -> None:
        self._sids_by_user.setdefault(principal.user_id, set()).add(sid)
        self._conns[sid] = (principal.user_id, conn_id)
        came_online = await self.presence.lease(
            str(principal.user_id), conn_id, self.settings.presence_ttl_seconds
        )
        if came_online:
            await self.announce_presence(principal.user_id)

    async def disconnected(self, sid: str, principal: Principal, conn_id: str) -> None:
        sids = self._sids_by_user.get(principal.user_id, set())
        sids.discard(sid)
        if not sids:
            self._sids_by_user.pop(principal.user_id, None)
        self._conns.pop(sid, None)
        grace = self.settings.presence_grace_seconds
        left = await self.presence.release(str(principal.user_id), conn_id, grace)
        if left == 0:
            self._spawn(self._offline_after(principal.user_id, grace))

    async def _offline_after(self, user_id: UUID, delay: float) -> None:
        await asyncio.sleep(delay)
        if await self.presence.go_offline_if_due(str(user_id)):
            await self.announce_presence(user_id)

    async def _heartbeat(self) -> None:
        """Renew this node's leases; if the node dies they run out within the TTL."""
        ttl = self.settings.presence_ttl_seconds
        while True:
            await asyncio.sleep(ttl / 3)
            self.metrics.rooms.set(len(self.sio.manager.rooms.get("/", {})))
            for user_id, conn_id in list(self._conns.values()):
                try:
                    await self.presence.lease(str(user_id), conn_id, ttl)
                except OSError as exc:  # Redis away: the next beat tries again
                    log.warning("hub.heartbeat_failed", error=str(exc))
                    break

    async def _sweep(self) -> None:
        """Declare offline the users whose leases ran out (their node died, say)."""
        interval = max(0.5, min(self.settings.presence_ttl_seconds, 10.0) / 5)
        while True:
            await asyncio.sleep(interval)
            try:
                for user in await self.presence.due_users():
                    if await self.presence.go_offline_if_due(user):
                        await self.announce_presence(UUID(user))
            except OSError as exc:
                log.warning("hub.sweep_failed", error=str(exc))

    async def announce_presence(self, user_id: UUID) -> PresenceState:
        state = await self.presence.get(str(user_id))
        data = state.wire()
        rooms = {STAFF}
        for field in ("customer_id", "assignee_id"):
            ids = await Conversation.filter(**{field: user_id}).values_list("id", flat=True)
            rooms.update(conversation_room(c) for c in cast(list[UUID], ids))
        for room in sorted(rooms):
            await self.gateway.emit_room("presence", data, room=room)
        await self.bus.emit("presence.changed", data, subject=f"user:{user_id}")
        return state

    async def set_presence(
        self, principal: Principal, *, status: Status | None, activity: Activity | None
    ) -> PresenceState:
        await self.presence.set_choice(str(principal.user_id), status=status, activity=activity)
        return await self.announce_presence(principal.user_id)

    async def presence_snapshot(self, limit: int = PRESENCE_LIST_LIMIT) -> list[dict[str, Any]]:
        """Who is online now (staff and customers), for a staff console that just connected;
        later changes arrive as `presence` events."""
        ids = await self.presence.online_users(limit)
        users = {
            str(u.id): u for u in await User.filter(id__in=[UUID(i) for i in ids], is_active=True)
        }
        snapshot = []
        for user_id in ids:
            user = users.get(user_id)
            if user is None:
                continue
            state = await self.presence.get(user_id)
            if not state.online:
                continue
            snapshot.append(
                {**state.wire(), "display_name": user.display_name, "role": user.role.value}
            )
        return snapshot

    async def online_staff(self) -> list[UUID]:
        staff = cast(
            list[UUID],
            await User.filter(role__in=list(STAFF_ROLES), is_active=True).values_list(
                "id", flat=True
            ),
        )
        online = []
        for user_id in staff:
            state = await self.presence.get(str(user_id))
            if state.online and state.status is Status.ONLINE:
                online.append(user_id)
        return online

    # -- chat fan-out ------------------------------------------------------------------------

    async def opened(self, principal: Principal, view: ConversationView) -> None:
        """A new conversation: the customer's tabs on this node join it, staff see it queued.
        (Tabs on other nodes join when they next connect or sync.)"""
        for sid in self.local_sids(principal.user_id):
            await self.sio.enter_room(sid, conversation_room(view.id))
        await self.offer_to_staff(view)

    async def deliver(self, sent: Sent) -> None:
        """A stored message goes to its room (every node), and to the inbox of a recipient
        who is not online, so the notification channels can reach them. Best effort while
        Redis is away: the live fan-out waits (clients `sync`), a recipient whose presence
        cannot be read counts as offline (an inbox row too many beats one too few), and the
        sender's send has succeeded either way."""
        message = sent.message
        try:
            await self._fan_out(sent)
        except FANOUT_ERRORS as exc:
            log.warning("hub.fanout_deferred", message_id=str(message.id), error=str(exc))
        conversation = sent.conversation
        recipient = (
            conversation.assignee_id
            if message.sender_id == conversation.customer_id
            else conversation.customer_id
        )
        if recipient is None or recipient == message.sender_id:
            return
        try:
            online = (await self.presence.get(str(recipient))).online
        except FANOUT_ERRORS:
            online = False
        if online:
            return
        try:
            await self.inbox.create(
                user_id=recipient,
                type="chat.new_message",
                title="New message",
                body=message.body[:140],
                link=f"/chat/{message.conversation_id}",
                data={
                    "conversation_id": str(message.conversation_id),
                    "seq": message.seq,
                    "message_id": str(message.id),
                },
            )
        except FANOUT_ERRORS as exc:  # the row is written before the event: sync replays it
            log.warning("hub.notify_deferred", message_id=str(message.id), error=str(exc))

    async def _fan_out(self, sent: Sent) -> None:
        message = sent.message
        await self.gateway.emit_room(
            "chat:message", message.wire(), room=conversation_room(message.conversation_id)
        )
        self.metrics.delivery.observe(max(0.0, time.time() - message.created_at.timestamp()))
        conversation = sent.conversation
        if sent.reopened:
            await self.offer_to_staff(conversation)
        elif conversation.assignee_id is None:
            await self.offer_to_staff(conversation, coalesce=True)

    async def announce_conversation(self, view: ConversationView) -> None:
        self._drop_held_offer(view.id)
        data = view.wire()
        await self.gateway.emit_room("chat:conversation", data, room=conversation_room(view.id))
        await self.gateway.emit_room("chat:conversation", data, room=STAFF)
        if view.assignee_id is not None:
            await self.gateway.emit_room("chat:assigned", data, room=user_room(view.assignee_id))

    async def offer_to_staff(self, view: ConversationView, *, coalesce: bool = False) -> None:
        """A conversation waiting for someone: staff consoles update their queue.

        With `coalesce` (a new message in an unassigned conversation), the first offer goes
        out at once and later ones within STAFF_OFFER_INTERVAL are folded into one trailing
        offer of the newest state: the queue's `last_seq`/`last_message_at` stay current
        without a second fan-out to every staff socket per message."""
        if not coalesce:
            self._drop_held_offer(view.id)
        elif view.id in self._held_offers:
            self._held_offers[view.id] = view  # sent when the window closes
            return
        else:
            self._held_offers[view.id] = None
            self._spawn(self._flush_offer(view.id))
        await self.gateway.emit_room("chat:conversation", view.wire(), room=STAFF)

    def _drop_held_offer(self, conversation_id: UUID) -> None:
        """A newer state went out: a held (older) offer must not follow it."""
        if self._held_offers.get(conversation_id) is not None:
            self._held_offers[conversation_id] = None

    async def _flush_offer(self, conversation_id: UUID) -> None:
        await asyncio.sleep(STAFF_OFFER_INTERVAL)
        view = self._held_offers.pop(conversation_id, None)
        if view is not None:
            await self.gateway.emit_room("chat:conversation", view.wire(), room=STAFF)

    async def authorize_file_room(self, principal: Principal, file_id: str) -> UUID:
        """The file's room is open to whoever may read the file (owner, grantees, staff with
        `files:read_any`); to anyone else it does not exist."""
        try:
            ident = UUID(file_id)
        except ValueError:
            raise NotFound("unknown_room", "No such room") from None
        try:
            await check_can_read(principal, ident)
        except NotFound:
            raise NotFound("unknown_room", "No such room") from None
        return ident

    # -- relays from the bus (each node to its own sockets) -----------------------------------

    async def _relay_dashboard(self, event: Event) -> None:
        await self.sio.manager.emit(
            "dashboard:event",
            {"type": event.type, "event": event.model_dump(mode="json")},
            namespace="/",
            room=dashboard_room(event.type),
            ignore_queue=True,
        )
        self.metrics.events_out.labels("dashboard:event").inc()

    async def _relay_file(self, event: Event) -> None:
        """Scan results and render progress to the sockets watching the file and to its
        owner's (a socket in both rooms gets it once)."""
        file_id = event.data.get("file_id")
        if not isinstance(file_id, str):
            return
        name = FILE_ROOM_EVENTS[event.type]
        rooms = [file_room(file_id)]
        owner_id = event.data.get("owner_id")
        if isinstance(owner_id, str):
            rooms.append(user_room(owner_id))  # the owner's tabs, whatever they watch
        await self.sio.manager.emit(name, event.data, namespace="/", room=rooms, ignore_queue=True)
        self.metrics.events_out.labels(name).inc()

    async def _push_notification(self, event: Event) -> None:
        user_id = event.data.get("user_id")
        if not isinstance(user_id, str):
            return
        if not self.local_sids(UUID(user_id)):
            return  # nobody of theirs on this node
        preferences = await load_preferences(UUID(user_id))
        if not preferences.allows(str(event.data.get("type", "")), Channel.IN_APP):
            return  # stored in the inbox (sync replays it), but no live event
        payload = {k: v for k, v in event.data.items() if k != "user_id"}
        await self.sio.manager.emit(
            "notification", payload, namespace="/", room=user_room(user_id), ignore_queue=True
        )
        self.metrics.events_out.labels("notification").inc()

    # -- the live unread count ---------------------------------------------------------------

    async def unread_count(self, user_id: UUID) -> int:
        count: int = await Notification.filter(user_id=user_id, read_at__isnull=True).count()
        return count

    async def _relay_unread(self, event: Event) -> None:
        """After a notification is created or read: `notifications:unread {count}` to the
        user's sockets on this node (every node hears the event)."""
        user_id = event.data.get("user_id")
        if not isinstance(user_id, str):
            return
        try:
            ident = UUID(user_id)
        except ValueError:
            return
        if not self.local_sids(ident):
            return
        count = await self.unread_count(ident)
        await self.sio.manager.emit(
            "notifications:unread",
            {"count": count},
            namespace="/",
            room=user_room(ident),
            ignore_queue=True,
        )
        self.metrics.events_out.labels("notifications:unread").inc()

    async def announce_unread(self, user_id: UUID) -> None:
        """The count to all of the user's sockets, on every node (after a delivery ack)."""
        count = await self.unread_count(user_id)
        await self.gateway.emit_room(
            "notifications:unread", {"count": count}, room=user_room(user_id)
        )
