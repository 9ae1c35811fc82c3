"""The gateway's Prometheus metrics, registered in the app's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class HubMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connected = Gauge(
            "hub_connected_sockets", "Socket.IO connections open on this node", registry=registry
        )
        self.events_in = Counter(
            "hub_events_in_total",
            "Client events received, by event and outcome",
            ["event", "outcome"],
            registry=registry,
        )
        self.events_out = Counter(
            "hub_events_out_total",
            "Server events emitted from this node, by event",
            ["event"],
            registry=registry,
        )
        self.delivery = Histogram(
            "hub_delivery_seconds",
            "From a chat message's commit to its emit towards the room",
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
        )
        self.reconnects = Counter(
            "hub_reconnects_total",
            "Connections that said they were reconnecting",
            registry=registry,
        )
        self.sync_replays = Counter(
            "hub_sync_replayed_total",
            "Messages and notifications replayed by sync",
            ["kind"],
            registry=registry,
        )
        self.rooms = Gauge("hub_rooms", "Rooms with members on this node", registry=registry)
