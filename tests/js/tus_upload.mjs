// Uploads a file with the official tus JavaScript client (tus-js-client 4), as a browser would:
// creation with upload, PATCHes of 64 KiB, an abort part way, then a resume from the URL.
// Usage: node tus_upload.mjs BASE_URL TOKEN FILE  -> prints one JSON object.
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import * as tus from "tus-js-client";

const [base, token, path] = process.argv.slice(2);
const data = await readFile(path);
const endpoint = new URL("api/v1/uploads/", base).toString();
const seen = { methods: [], resumedFrom: null, fileId: null, fileVersion: null };

function options(extra) {
  return {
    endpoint,
    headers: { Authorization: `Bearer ${token}` },
    metadata: { filename: basename(path), filetype: "model/stl" },
    chunkSize: 64 * 1024,
    uploadDataDuringCreation: true,
    retryDelays: [0, 100, 500],
    onAfterResponse(req, res) {
      seen.methods.push(req.getMethod());
      if (req.getMethod() === "HEAD") seen.resumedFrom = Number(res.getHeader("Upload-Offset"));
      if (res.getHeader("X-File-Id")) {
        seen.fileId = res.getHeader("X-File-Id");
        seen.fileVersion = res.getHeader("X-File-Version");
      }
    },
    ...extra,
  };
}

// First attempt: stop after a few chunks (the user closed the tab).
const uploadUrl = await new Promise((resolve, reject) => {
  let chunks = 0;
  const upload = new tus.Upload(
    data,
    options({
      onChunkComplete() {
        chunks += 1;
        if (chunks === 3) upload.abort().then(() => resolve(upload.url), reject);
      },
      onError: reject,
    }),
  );
  upload.start();
});

// Second attempt: resume from the upload URL.
await new Promise((resolve, reject) => {
  const upload = new tus.Upload(data, options({ uploadUrl, onSuccess: resolve, onError: reject }));
  upload.start();
});
console.log(JSON.stringify({ uploadUrl, ...seen }));
