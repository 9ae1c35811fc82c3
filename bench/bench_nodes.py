"""Across nodes: two hub processes sharing rooms through Redis, the sender connected to one and
the receivers to the other, at a target of BENCH_NODES_RATE deliveries per second.

Ours: two `ideinstein serve` processes with REDIS_URL (python-socketio's AsyncRedisManager
for rooms, the Redis bus and presence) on one shared embedded database (SQLite in WAL mode:
node A writes each message before it publishes it; node B only reads). Reference: two Node
Socket.IO 4.8 servers with @socket.io/redis-adapter (bench/peers/socketio_redis_server.mjs),
which persist nothing. Both are driven by bench/peers/nodes_load.mjs: RECEIVERS sockets in
the room on node B, one sender on node A paced at RATE / RECEIVERS messages per second.
Prints p50/p99 delivery latency and the deliveries per second reached (medians of
BENCH_RUNS). Needs Redis (REDIS_URL, default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.harness import (
    PEERS,
    Proc,
    ensure_peers,
    free_port,
    hub_accounts,
    median,
    print_table,
    running_hub,
    wait_for_port,
)

RECEIVERS = int(os.environ.get("BENCH_NODES_RECEIVERS", "100"))
RATE = int(os.environ.get("BENCH_NODES_RATE", "10000"))  # deliveries per second
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SIZE = 1024


def _load(
    sender_port: int, receiver_port: int, sender: str, receiver: str, conversation_id: str
) -> dict[str, Any]:
    messages_per_second = max(1, RATE // RECEIVERS)
    out = subprocess.run(
        [
            "node",
            str(PEERS / "nodes_load.mjs"),
            f"http://127.0.0.1:{sender_port}",
            f"http://127.0.0.1:{receiver_port}",
            sender,
            receiver,
            conversation_id,
            str(RECEIVERS),
            str(SECONDS),
            str(SIZE),
            str(messages_per_second),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=SECONDS + 180,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _measure(procs: list[Proc], run: Any) -> dict[str, Any]:
    cpu_before = [p.cpu_seconds() for p in procs]
    result: dict[str, Any] = run()
    result["cpu_seconds"] = sum(p.cpu_seconds() - c for p, c in zip(procs, cpu_before, strict=True))
    result["peak_rss_mib"] = sum(p.peak_rss_kib() for p in procs) / 1024
    return result


def run_ours() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        shared = {
            "REDIS_URL": REDIS_URL,
            "REDIS_PREFIX": f"bench{secrets.token_hex(4)}:",
            "DATABASE_URL": f"sqlite://{tmp}/shared.db",
        }
        a, b = Path(tmp, "a"), Path(tmp, "b")
        a.mkdir()
        b.mkdir()
        proc_a, port_a = stack.enter_context(running_hub(a, env=shared))
        proc_b, port_b = stack.enter_context(running_hub(b, env=shared))
        with _environ(DATABASE_URL=shared["DATABASE_URL"]):  # the accounts go to the shared db
            accounts = hub_accounts(a, port_a)
        return _measure(
            [proc_a, proc_b],
            lambda: _load(
                port_a,
                port_b,
                accounts.customer_token,
                accounts.staff_token,
                accounts.conversation_id,
            ),
        )


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _node_server(key: str) -> Iterator[tuple[Proc, int]]:
    port = free_port()
    popen = subprocess.Popen(
        ["node", str(PEERS / "socketio_redis_server.mjs"), str(port), REDIS_URL, key],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proc = Proc(popen)
    try:
        wait_for_port(port)
        yield proc, port
    finally:
        proc.stop()


def run_node() -> dict[str, Any]:
    key = f"bench{secrets.token_hex(4)}"
    with _node_server(key) as (proc_a, port_a), _node_server(key) as (proc_b, port_b):
        return _measure([proc_a, proc_b], lambda: _load(port_a, port_b, "-", "-", "bench"))


def main() -> None:
    ensure_peers()
    ours = [run_ours() for _ in range(RUNS)]
    node = [run_node() for _ in range(RUNS)]

    def med(results: list[dict[str, Any]], key: str) -> float:
        return median([float(r[key] or 0) for r in results])

    print_table(
        f"Across nodes: 2 processes over Redis, sender on one, {RECEIVERS} receivers on the "
        f"other, target {RATE:,} deliveries/s, 1 KB, {SECONDS} s (median of {RUNS}; "
        "reference: 2 Node Socket.IO 4.8 servers with @socket.io/redis-adapter)",
        [
            (
                "deliveries/s reached",
                med(ours, "deliveries_per_second"),
                med(node, "deliveries_per_second"),
                True,
            ),
            ("p50 latency ms", med(ours, "p50_ms"), med(node, "p50_ms"), False),
            ("p99 latency ms", med(ours, "p99_ms"), med(node, "p99_ms"), False),
            ("servers' CPU s", med(ours, "cpu_seconds"), med(node, "cpu_seconds"), False),
            ("servers' peak MiB", med(ours, "peak_rss_mib"), med(node, "peak_rss_mib"), False),
        ],
    )
    for name, results in (("ours", ours), ("node", node)):
        print(
            f"{name}: sent {[r['sent'] for r in results]}, skipped (over the in-flight cap) "
            f"{[r['skipped'] for r in results]}, undelivered "
            f"{[r['expected'] - r['delivered'] for r in results]}"
        )


if __name__ == "__main__":
    main()
