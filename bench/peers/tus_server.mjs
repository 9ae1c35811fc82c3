// The reference tus server: @tus/server with @tus/file-store, nothing else.
// node tus_server.mjs PORT [DIRECTORY]  (uploads land in DIRECTORY, default ./tus-files)
import http from "node:http";
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const port = Number(process.argv[2] ?? 1080);
const directory = process.argv[3] ?? "./tus-files";
const tus = new Server({ path: "/files", datastore: new FileStore({ directory }) });
http.createServer((req, res) => tus.handle(req, res)).listen(port, "127.0.0.1");
