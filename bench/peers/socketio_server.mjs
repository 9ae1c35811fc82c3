// The reference: a minimal Node Socket.IO 4.8 server with the hub's chat contract
// (subscribe to a room, chat:send acked with a numbered message, chat:message to the room).
// It persists nothing: it is the ceiling for the transport, not a chat product.
// Usage: node socketio_server.mjs PORT
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] || 3000);
const httpServer = createServer();
const io = new Server(httpServer, { serveClient: false });
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
