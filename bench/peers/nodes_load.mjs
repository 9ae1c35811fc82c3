// Across nodes: RECEIVERS sockets in one conversation room on RECEIVER_URL, one sender on
// SENDER_URL sending RATE chat:send per second (paced in 10 ms ticks, at most MAX_INFLIGHT
// unacknowledged) for SECONDS, SIZE-byte bodies. One process, one clock for every delivery.
// Usage: node nodes_load.mjs SENDER_URL RECEIVER_URL SENDER_TOKEN RECEIVER_TOKEN CONVERSATION_ID
//        [RECEIVERS=100] [SECONDS=10] [SIZE=1024] [RATE=100] [MAX_INFLIGHT=200] -> one JSON line
import { performance } from "node:perf_hooks";
import { io } from "socket.io-client";

const [senderUrl, receiverUrl, senderToken, receiverToken, conversationId] = process.argv.slice(2, 7);
const receivers = Number(process.argv[7] || 100);
const seconds = Number(process.argv[8] || 10);
const size = Number(process.argv[9] || 1024);
const rate = Number(process.argv[10] || 100);
const maxInflight = Number(process.argv[11] || 200);
const room = `conversation:${conversationId}`;

function connect(url, token) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false, forceNew: true });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

const latencies = [];
let delivered = 0;
let measuring = false;
const sockets = [];
for (let i = 0; i < receivers; i += 50) {
  const batch = [];
  for (let j = i; j < Math.min(i + 50, receivers); j++) batch.push(connect(receiverUrl, receiverToken));
  sockets.push(...(await Promise.all(batch)));
}
await Promise.all(
  sockets.map(async (socket) => {
    const ack = await socket.timeout(30000).emitWithAck("subscribe", { room });
    if (!ack.ok) throw new Error(`subscribe refused: ${JSON.stringify(ack)}`);
    socket.on("chat:message", (message) => {
      if (!measuring) return;
      const sentAt = Number(message.body.slice(0, message.body.indexOf("|")));
      latencies.push(performance.now() - sentAt);
      delivered += 1;
    });
  }),
);

const sender = await connect(senderUrl, senderToken);
const padding = "x".repeat(size);
let sent = 0;
let acked = 0;
let failed = 0;
let skipped = 0;
let inflight = 0;
measuring = true;
const started = performance.now();
const deadline = started + seconds * 1000;
let due = 0;
await new Promise((resolve) => {
  const tick = setInterval(() => {
    const now = performance.now();
    if (now >= deadline) {
      clearInterval(tick);
      resolve();
      return;
    }
    const target = Math.floor(((now - started) / 1000) * rate);
    while (due < target) {
      due += 1;
      if (inflight >= maxInflight) {
        skipped += 1; // the server is behind: counted, not queued without bound
        continue;
      }
      const stamp = `${performance.now()}|`;
      inflight += 1;
      sent += 1;
      sender
        .timeout(30000)
        .emitWithAck("chat:send", {
          conversation_id: conversationId,
          client_msg_id: `nodes-${due}-${started}`,
          body: stamp + padding.slice(stamp.length),
        })
        .then((ack) => (ack.ok ? (acked += 1) : (failed += 1)))
        .catch(() => (failed += 1))
        .finally(() => (inflight -= 1));
    }
  }, 10);
});
const sendSeconds = (performance.now() - started) / 1000;
const expectedUntil = performance.now() + 10000;
while ((inflight > 0 || delivered < acked * receivers) && performance.now() < expectedUntil) {
  await new Promise((resolve) => setTimeout(resolve, 20));
}
const elapsed = (performance.now() - started) / 1000;
measuring = false;
latencies.sort((a, b) => a - b);
const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null);
for (const socket of [...sockets, sender]) socket.close();
console.log(
  JSON.stringify({
    receivers,
    rate,
    sent,
    acked,
    failed,
    skipped,
    delivered,
    expected: acked * receivers,
    send_seconds: sendSeconds,
    elapsed_seconds: elapsed,
    deliveries_per_second: delivered / elapsed,
    p50_ms: pct(0.5),
    p99_ms: pct(0.99),
  }),
);
process.exit(0);
