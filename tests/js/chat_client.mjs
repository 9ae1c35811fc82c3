// Drives the hub with the official Socket.IO JavaScript client, as a browser would.
// Usage: node chat_client.mjs URL TOKEN BAD_TOKEN  -> prints one JSON object.
import { io } from "socket.io-client";

const [url, token, badToken] = process.argv.slice(2);

function refusal(authToken) {
  return new Promise((resolve) => {
    const socket = io(url, { auth: { token: authToken }, reconnection: false });
    socket.on("connect_error", (err) => {
      socket.close();
      resolve({ message: err.message, data: err.data });
    });
  });
}

const refused = await refusal(badToken);

const socket = io(url, { auth: { token }, reconnection: false });
await new Promise((resolve, reject) => {
  socket.on("connect", resolve);
  socket.on("connect_error", reject);
});
const echoed = new Promise((resolve) => socket.on("chat:message", resolve));
const opened = await socket.timeout(5000).emitWithAck("chat:open", { subject: "from node" });
const conversationId = opened.conversation.id;
const sent = await socket.timeout(5000).emitWithAck("chat:send", {
  conversation_id: conversationId,
  client_msg_id: "js-1",
  body: "hello from the JS client",
});
const message = await echoed;
const history = await socket.timeout(5000).emitWithAck("chat:history", {
  conversation_id: conversationId,
  limit: 10,
});
const transport = socket.io.engine.transport.name;
socket.close();
console.log(JSON.stringify({ refused, opened, sent, message, history, transport }));
