// Idle connections: open N Socket.IO connections (websocket, authenticated with TOKEN; the
// Node reference ignores it), print one JSON line when all are up, then hold them until
// stdin closes (the benchmark measures the server's memory meanwhile).
// Usage: node idle_load.mjs URL TOKEN N [BATCH=100]
import { io } from "socket.io-client";

const [url, token] = process.argv.slice(2, 4);
const count = Number(process.argv[4] || 10000);
const batchSize = Number(process.argv[5] || 100);

function connect() {
  return new Promise((resolve, reject) => {
    const socket = io(url, {
      auth: { token },
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
      timeout: 60000,
    });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

const started = Date.now();
const sockets = [];
let failed = 0;
for (let i = 0; i < count; i += batchSize) {
  const batch = [];
  for (let j = i; j < Math.min(i + batchSize, count); j++) batch.push(connect());
  for (const result of await Promise.allSettled(batch)) {
    if (result.status === "fulfilled") sockets.push(result.value);
    else failed += 1;
  }
}
let dropped = 0;
for (const socket of sockets) socket.on("disconnect", () => (dropped += 1));
console.log(
  JSON.stringify({ connected: sockets.length, failed, connect_seconds: (Date.now() - started) / 1000 }),
);
process.stdin.resume();
process.stdin.on("end", () => {
  console.log(JSON.stringify({ dropped }));
  for (const socket of sockets) socket.close();
  process.exit(0);
});
