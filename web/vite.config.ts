// Two pages, built into dist/: the customer portal (index.html, served at /) and the staff
// dashboard (dashboard/index.html, served at /dashboard). Hashed assets go to dist/assets/.
import { resolve } from "node:path";
import { defineConfig } from "vite";

const root = import.meta.dirname;
const hub = process.env.HUB_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
    chunkSizeWarningLimit: 700, // the 3D viewer (three.js), loaded only on a file's page
    rollupOptions: {
      input: {
        portal: resolve(root, "index.html"),
        dashboard: resolve(root, "dashboard/index.html"),
      },
    },
  },
  // `npm run dev`: the pages from Vite, everything else from a running `ideinstein serve`.
  server: {
    proxy: {
      "/api": hub,
      "/socket.io": { target: hub, ws: true },
    },
  },
});
