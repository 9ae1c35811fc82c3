"""Fan-out: RECEIVERS Socket.IO clients in one conversation room, one sender, 1 KB messages.

Ours: the hub (`ideinstein serve`, embedded mode: each message is written to the database
before anyone is told). Reference: the Node Socket.IO 4.8 server in bench/peers/, which
persists nothing. Both are driven by the same Node load generator (socket.io-client).
Prints deliveries per second, p50/p99 delivery latency, server CPU seconds and peak memory:
medians of BENCH_RUNS runs (default 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
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

RECEIVERS = int(os.environ.get("BENCH_RECEIVERS", "1000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SIZE = 1024


def _load(port: int, sender: str, receiver: str, conversation_id: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            "node",
            str(PEERS / "fanout_load.mjs"),
            f"http://127.0.0.1:{port}",
            sender,
            receiver,
            conversation_id,
            str(RECEIVERS),
            str(SECONDS),
            str(SIZE),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=SECONDS + 180,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _measure(proc: Proc, run: Any) -> dict[str, Any]:
    cpu_before = proc.cpu_seconds()
    result: dict[str, Any] = run()
    result["cpu_seconds"] = proc.cpu_seconds() - cpu_before
    result["peak_rss_mib"] = proc.peak_rss_kib() / 1024
    return result


def run_ours() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, running_hub(Path(tmp)) as (proc, port):
        accounts = hub_accounts(Path(tmp), port)
        return _measure(
            proc,
            lambda: _load(
                port, accounts.customer_token, accounts.staff_token, accounts.conversation_id
            ),
        )


def run_node() -> dict[str, Any]:
    with running_node("socketio_server.mjs") as (proc, port):
        return _measure(proc, lambda: _load(port, "-", "-", "bench"))


def main() -> None:
    ensure_peers()
    # Alternate the two servers, so that a slow patch of a shared machine weighs on both.
    ours: list[dict[str, Any]] = []
    node: list[dict[str, Any]] = []
    for _ in range(RUNS):
        ours.append(run_ours())
        node.append(run_node())

    def med(results: list[dict[str, Any]], key: str) -> float:
        return median([float(r[key] or 0) for r in results])

    print_table(
        f"Fan-out: {RECEIVERS} clients in one room, 1 KB messages, {SECONDS} s "
        f"(median of {RUNS}; reference: Node Socket.IO 4.8)",
        [
            (
                "deliveries/s",
                med(ours, "deliveries_per_second"),
                med(node, "deliveries_per_second"),
                True,
            ),
            ("messages sent/s", med(ours, "sent") / SECONDS, med(node, "sent") / SECONDS, True),
            ("p50 latency ms", med(ours, "p50_ms"), med(node, "p50_ms"), False),
            ("p99 latency ms", med(ours, "p99_ms"), med(node, "p99_ms"), False),
            ("server CPU s", med(ours, "cpu_seconds"), med(node, "cpu_seconds"), False),
            ("server peak MiB", med(ours, "peak_rss_mib"), med(node, "peak_rss_mib"), False),
        ],
    )
    lost = [r["expected"] - r["delivered"] for r in ours]
    print(f"ours: undelivered after drain per run: {lost}")
    print(
        "p99 ms per run (ours / node): "
        + ", ".join(f"{a['p99_ms']:.1f}/{b['p99_ms']:.1f}" for a, b in zip(ours, node, strict=True))
    )


if __name__ == "__main__":
    main()
