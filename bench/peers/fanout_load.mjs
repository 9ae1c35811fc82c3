// The load generator both servers get: RECEIVERS sockets in one conversation room, one sender
// keeping WINDOW chat:send calls in flight for SECONDS with SIZE-byte bodies. Senders and
// receivers share this process, so one clock times every delivery.
// Usage: node fanout_load.mjs URL SENDER_TOKEN RECEIVER_TOKEN CONVERSATION_ID
//        [RECEIVERS=1000] [SECONDS=10] [SIZE=1024] [WINDOW=8]   -> one JSON line
import { performance } from "node:perf_hooks";
import { io } from "socket.io-client";

const [url, senderToken, receiverToken, conversationId] = process.argv.slice(2, 6);
const receivers = Number(process.argv[6] || 1000);
const seconds = Number(process.argv[7] || 10);
const size = Number(process.argv[8] || 1024);
const windowSize = Number(process.argv[9] || 8);
const room = `conversation:${conversationId}`;

function connect(token) {
  return new Promise((resolve, reject) => {
    const socket = io(url, {
      auth: { token },
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
    });
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
  for (let j = i; j < Math.min(i + 50, receivers); j++) batch.push(connect(receiverToken));
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

const sender = await connect(senderToken);
const padding = "x".repeat(size);
let sent = 0;
let failed = 0;
const deadline = performance.now() + seconds * 1000;
measuring = true;
const started = performance.now();

async function lane(lane) {
  let n = 0;
  while (performance.now() < deadline) {
    const stamp = `${performance.now()}|`;
    const body = stamp + padding.slice(stamp.length);
    const ack = await sender.timeout(30000).emitWithAck("chat:send", {
      conversation_id: conversationId,
      client_msg_id: `bench-${lane}-${n++}-${started}`,
      body,
    });
    if (ack.ok) sent += 1;
    else failed += 1;
  }
}
await Promise.all(Array.from({ length: windowSize }, (_, i) => lane(i)));
const sendSeconds = (performance.now() - started) / 1000;
// Let in-flight deliveries land: until every receiver has every acked message, or 10 s.
const expected = sent * receivers;
const drainDeadline = performance.now() + 10000;
while (delivered < expected && performance.now() < drainDeadline) {
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
    sent,
    failed,
    delivered,
    expected,
    send_seconds: sendSeconds,
    elapsed_seconds: elapsed,
    deliveries_per_second: delivered / elapsed,
    p50_ms: pct(0.5),
    p99_ms: pct(0.99),
  }),
);
process.exit(0);
