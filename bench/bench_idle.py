"""Idle connections: N Socket.IO clients connected to one server and doing nothing.

Memory per connection = (server RSS with N connected - RSS before) / N, against the Node
Socket.IO 4.8 reference (bench/peers/socketio_server.mjs). Ours: the hub (`ideinstein serve`,
embedded mode); each socket authenticates with a customer's access token, so it carries the
hub's per-connection state (session, rooms, presence lease). The same Node process
(bench/peers/idle_load.mjs, socket.io-client over websocket) opens the sockets for both.
N is BENCH_IDLE_CONNECTIONS (default 10,000); the open-files limit is raised to the hard limit
for the servers and the load generator, and N is lowered to fit it (said in the output).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    PEERS,
    Proc,
    ensure_peers,
    hub_accounts,
    median,
    print_table,
    running_hub,
    running_node,
)

WANTED = int(os.environ.get("BENCH_IDLE_CONNECTIONS", "10000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SETTLE_SECONDS = float(os.environ.get("BENCH_IDLE_SETTLE", "3"))
HEADROOM = 200  # descriptors a server needs besides its sockets (database, logs, listeners)


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft limit to the hard one (children inherit it); the connections that fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted + HEADROOM)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return min(wanted, target - HEADROOM)


def _idle(proc: Proc, port: int, token: str, count: int) -> dict[str, Any]:
    time.sleep(0.5)
    before_kib = proc.rss_kib()
    load = subprocess.Popen(
        ["node", str(PEERS / "idle_load.mjs"), f"http://127.0.0.1:{port}", token, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert load.stdout is not None
    assert load.stdin is not None
    try:
        ready: dict[str, Any] = json.loads(load.stdout.readline())
        time.sleep(SETTLE_SECONDS)
        after_kib = proc.rss_kib()
        load.stdin.close()
        done: dict[str, Any] = json.loads(load.stdout.readline() or "{}")
    finally:
        if load.poll() is None:
            load.terminate()
        load.wait(30)
    connected = int(ready["connected"])
    return {
        "connected": connected,
        "failed": int(ready["failed"]),
        "dropped": int(done.get("dropped", 0)),
        "connect_seconds": float(ready["connect_seconds"]),
        "rss_before_mib": before_kib / 1024,
        "rss_after_mib": after_kib / 1024,
        "kib_per_connection": (after_kib - before_kib) / max(connected, 1),
    }


def run_ours(count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, running_hub(Path(tmp)) as (proc, port):
        accounts = hub_accounts(Path(tmp), port)
        return _idle(proc, port, accounts.customer_token, count)


def run_node(count: int) -> dict[str, Any]:
    with running_node("socketio_server.mjs") as (proc, port):
        return _idle(proc, port, "-", count)


def main() -> None:
    ensure_peers()
    count = raise_open_files_limit(WANTED)
    if count < WANTED:
        print(f"open-files limit: {count} connections instead of {WANTED}")
    ours = [run_ours(count) for _ in range(RUNS)]
    node = [run_node(count) for _ in range(RUNS)]

    def med(results: list[dict[str, Any]], key: str) -> float:
        return median([float(r[key]) for r in results])

    print_table(
        f"Idle connections: {count:,} sockets on one process (median of {RUNS}; "
        "reference: Node Socket.IO 4.8)",
        [
            (
                "KiB per connection",
                med(ours, "kib_per_connection"),
                med(node, "kib_per_connection"),
                False,
            ),
            (
                "RSS with all connected MiB",
                med(ours, "rss_after_mib"),
                med(node, "rss_after_mib"),
                False,
            ),
            (
                "seconds to connect all",
                med(ours, "connect_seconds"),
                med(node, "connect_seconds"),
                False,
            ),
        ],
    )
    for name, results in (("ours", ours), ("node", node)):
        print(
            f"{name}: connected {[r['connected'] for r in results]}, "
            f"refused {[r['failed'] for r in results]}, dropped {[r['dropped'] for r in results]}"
        )


if __name__ == "__main__":
    main()
