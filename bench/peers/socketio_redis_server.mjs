// The cross-node reference: socketio_server.mjs's chat contract on Socket.IO 4.8 with
// @socket.io/redis-adapter, so that several of these processes share rooms through Redis.
// The sequence number is per process (it persists nothing): fine for one sender.
// Usage: node socketio_redis_server.mjs PORT REDIS_URL CHANNEL_PREFIX
import { createServer } from "node:http";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

const port = Number(process.argv[2] || 3000);
const redisUrl = process.argv[3] || "redis://127.0.0.1:6379";
const key = process.argv[4] || "socket.io";
const pubClient = createClient({ url: redisUrl });
const subClient = pubClient.duplicate();
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, { serveClient: false, adapter: createAdapter(pubClient, subClient, { key }) });
const seqs = new Map();

io.on("connection", (socket) => {
  socket.on("subscribe", (payload, ack) => {
    socket.join(payload.room);
    ack({ ok: true, room: payload.room });
  });
  socket.on("chat:send", (payload, ack) => {
    const seq = (seqs.get(payload.conversation_id) || 0) + 1;
    seqs.set(payload.conversation_id, seq);
    const message = {
      id: `${payload.conversation_id}-${seq}`,
      conversation_id: payload.conversation_id,
      seq,
      client_msg_id: payload.client_msg_id,
      body: payload.body,
      created_at: new Date().toISOString(),
    };
    io.to(`conversation:${payload.conversation_id}`).emit("chat:message", message);
    ack({ ok: true, message });
  });
});

httpServer.listen(port, "127.0.0.1", () => console.log(`listening ${port}`));
