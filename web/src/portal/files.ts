// The portal's files: the folder tree, tags and search, uploads over tus (progress bar, pause
// and resume, resume after a reload), and a file's page: scan status, the render progress
// live, the 3D preview (three.js on the web GLB, loaded on demand, with the PNG as its
// poster and fallback), the geometry, tags, versions with rollback, and share links.

import { announce, clear, errorText, formatDateTime, h, rebuildKeepingFocus } from "../lib/dom";
import {
  RENDERABLE,
  SCAN_TEXT,
  type FileDetail,
  type FileItem,
  type Folder,
  type Geometry,
  type RenderEvent,
  type ScanEvent,
  type Share,
  type ShareAccess,
  type ShareCreated,
  type Version,
  fetchBlob,
  fetchBlobUrl,
  formatSize,
  outputUrl,
  saveDownload,
} from "../lib/files";
import { TusUpload, forgetUpload, unfinishedUploads } from "../lib/upload";
import { field, formError, navigate } from "./forms";
import { listen, type PageContext } from "./pagecontext";

const VIEW_NAMES: Record<string, string> = {
  view_iso: "Isometric view",
  view_front: "Front view",
  view_top: "Top view",
  view_right: "Right view",
};

function scanBadge(status: Version["scan_status"] | undefined): HTMLElement {
  const value = status ?? "pending";
  return h("span", { class: `scan scan-${value}`, "data-scan": value, id: "scan-status" }, SCAN_TEXT[value]);
}

function progressBar(id: string, label: string): { wrap: HTMLElement; bar: HTMLProgressElement; text: HTMLElement } {
  const bar = h("progress", { id, max: 100, value: 0, "aria-label": label });
  const text = h("span", { class: "hint", id: `${id}-text` });
  return { wrap: h("div", { class: "progress-row" }, bar, text), bar, text };
}

// -- the list ----------------------------------------------------------------------------------

export function filesPage(context: PageContext, params: URLSearchParams): HTMLElement {
  const { session } = context;
  const folderId = params.get("folder");
  const tag = params.get("tag");
  const q = params.get("q") ?? "";

  const tree = h("ul", { class: "tree", id: "folder-tree" });
  const list = h("ul", { class: "list files", id: "file-list", "aria-live": "off" });
  const tags = h("ul", { class: "row tags", id: "tag-cloud", "aria-label": "Tags" });
  const heading = h("h1", { id: "files-title" }, "Files");
  const status = h("p", { class: "hint", role: "status" });

  const link = (query: Record<string, string | null>, label: string, current: boolean): HTMLElement => {
    const next = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v) next.set(k, v);
    const text = next.toString();
    return h("a", { href: `/files${text ? `?${text}` : ""}`, "aria-current": current ? "page" : null }, label);
  };

  // folders: the whole tree of the caller, one request per level
  const folderNames = new Map<string, Folder>();
  const loadTree = async (): Promise<void> => {
    const build = async (parent: string | null, into: HTMLElement): Promise<void> => {
      const { items } = await session.request<{ items: Folder[] }>("GET", "/folders", { query: { parent_id: parent } });
      for (const f of items) {
        folderNames.set(f.id, f);
        const children = h("ul", {});
        into.append(h("li", {}, link({ folder: f.id }, f.name, f.id === folderId), children));
        await build(f.id, children);
      }
    };
    clear(tree);
    tree.append(h("li", {}, link({}, "All files", !folderId && !tag && !q)), h("li", {}, link({ folder: "root" }, "Not in a folder", folderId === "root")));
    await build(null, tree);
    const current = folderId ? folderNames.get(folderId) : undefined;
    if (current) heading.textContent = `Files in ${current.name}`;
  };

  const renderFiles = (items: FileItem[]): void => {
    clear(list);
    const seen = new Set<string>();
    for (const f of items) {
      for (const t of f.tags) seen.add(t);
      list.append(
        h(
          "li",
          { "data-file-id": f.id },
          h("a", { href: `/files/${f.id}`, class: "file-name" }, f.name),
          h("div", { class: "hint" }, `${f.kind.toUpperCase()} · ${formatSize(f.size)} · version ${f.current_version} · ${formatDateTime(f.updated_at)}`),
          f.tags.length ? h("div", { class: "row" }, f.tags.map((t) => h("span", { class: "tag" }, t))) : null,
        ),
      );
    }
    if (!items.length) list.append(h("li", {}, q || tag ? "No file matches." : "No files here yet. Upload one above."));
    clear(tags);
    for (const t of [...seen].sort()) tags.append(h("li", {}, link({ tag: t }, `#${t}`, t === tag)));
    if (tag && !seen.has(tag)) tags.append(h("li", {}, link({ tag }, `#${tag}`, true)));
  };

  const loadFiles = async (): Promise<void> => {
    const page = await session.request<{ items: FileItem[] }>("GET", "/files", {
      query: { folder_id: folderId, tag, q: q || null, order: q ? null : "name", limit: 200 },
    });
    renderFiles(page.items);
    if (q) status.textContent = `${page.items.length} found for “${q}”.`;
  };
  const reload = () => {
    void loadFiles().catch((e: unknown) => (status.textContent = errorText(e)));
  };

  // search
  const search = h("input", { id: "file-search", name: "q", type: "search", value: q, placeholder: "Name, tag, or a fact like triangles" });
  const searchForm = h(
    "form",
    {
      role: "search",
      class: "row",
      onsubmit: (event: Event) => {
        event.preventDefault();
        const next = new URLSearchParams();
        if (search.value.trim()) next.set("q", search.value.trim());
        navigate(`/files${next.toString() ? `?${next}` : ""}`);
      },
    },
    h("label", { for: "file-search" }, "Search files"),
    search,
    h("button", { type: "submit" }, "Search"),
  );

  // new folder
  const folderName = field("New folder", "folder_name", { maxlength: 255, required: true });
  const folderError = formError();
  const folderForm = h(
    "form",
    {
      class: "stack",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        folderError.textContent = "";
        try {
          const parent = folderId && folderId !== "root" ? folderId : null;
          await session.request("POST", "/folders", { body: { name: folderName.input.value, parent_id: parent } });
          folderName.input.value = "";
          await loadTree();
          announce("Folder created");
        } catch (e) {
          folderError.textContent = errorText(e);
        }
      },
    },
    folderError,
    folderName.wrap,
    h("button", { type: "submit" }, folderId && folderId !== "root" ? "Create subfolder" : "Create folder"),
  );

  const uploads = uploadPanel(context, {
    folderId: folderId && folderId !== "root" ? folderId : null,
    fileId: null,
    onDone: reload,
  });

  void loadTree().catch(() => undefined);
  reload();

  return h(
    "div",
    { class: "files-layout" },
    h(
      "nav",
      { "aria-label": "Folders", class: "card" },
      h("h2", {}, "Folders"),
      tree,
      folderForm,
    ),
    h(
      "section",
      { "aria-labelledby": "files-title" },
      heading,
      searchForm,
      status,
      uploads,
      h("h2", {}, "Tags"),
      tags,
      h("h2", { id: "file-list-title" }, tag ? `Tagged #${tag}` : q ? "Search results" : "Your files"),
      list,
    ),
  );
}

// -- uploads -----------------------------------------------------------------------------------

interface UploadPanelOptions {
  folderId: string | null;
  fileId: string | null; // a new version of this file
  onDone: (fileId: string) => void;
}

export function uploadPanel(context: PageContext, options: UploadPanelOptions): HTMLElement {
  const inputId = options.fileId ? "version-file" : "upload-file";
  const input = h("input", { id: inputId, name: "file", type: "file" });
  const items = h("ul", { class: "list uploads", id: options.fileId ? "version-uploads" : "uploads" });
  const unfinished = h("ul", { class: "list", id: "unfinished-uploads" });
  let active: TusUpload | null = null;

  const showUnfinished = async (): Promise<void> => {
    if (options.fileId) return;
    const previous = await unfinishedUploads();
    clear(unfinished);
    for (const p of previous) {
      const name = p.metadata.filename ?? "a file";
      unfinished.append(
        h(
          "li",
          {},
          `${name} (${p.size !== null ? formatSize(p.size) : "size unknown"}) was not finished. Choose the same file again to continue where it stopped. `,
          h(
            "button",
            {
              type: "button",
              onclick: async () => {
                await forgetUpload(p);
                await showUnfinished();
              },
            },
            "Forget",
            h("span", { class: "visually-hidden" }, ` ${name}`),
          ),
        ),
      );
    }
    unfinished.hidden = previous.length === 0;
  };

  input.addEventListener("change", () => {
    const file = input.files?.[0];
    if (!file) return;
    if (active && (active.state === "uploading" || active.state === "paused")) {
      announce("Finish or cancel the current upload first");
      return;
    }
    const progress = progressBar(`upload-progress-${items.childElementCount}`, `Uploading ${file.name}`);
    const state = h("span", { class: "upload-state", role: "status" }, "Starting…");
    const pause = h("button", { type: "button", class: "pause" }, "Pause");
    const cancel = h("button", { type: "button" }, "Cancel");
    const result = h("div", {});
    const item = h("li", { class: "upload", "data-state": "uploading" }, h("strong", {}, file.name), progress.wrap, h("div", { class: "row" }, state, pause, cancel), result);
    items.prepend(item);
    let lastAnnounced = 0;
    const upload = new TusUpload(context.session, file, { folderId: options.folderId, fileId: options.fileId }, {
      onProgress: (sent, total) => {
        const percent = total ? Math.floor((sent / total) * 100) : 0;
        progress.bar.value = percent;
        progress.text.textContent = `${percent}% · ${formatSize(sent)} of ${formatSize(total)}`;
        if (percent - lastAnnounced >= 25) {
          lastAnnounced = percent;
          announce(`Upload ${percent}%`);
        }
      },
      onResumed: () => {
        state.textContent = "Resuming an earlier upload of this file…";
        item.dataset.resumed = "true";
      },
      onState: (value, detail) => {
        item.dataset.state = value;
        pause.textContent = value === "paused" || value === "failed" ? "Resume" : "Pause";
        pause.hidden = value === "done";
        cancel.hidden = value === "done";
        state.textContent =
          value === "uploading" ? "Uploading…" : value === "paused" ? "Paused" : value === "done" ? "Uploaded" : `Failed: ${detail ?? ""}`;
        if (value !== "uploading") announce(state.textContent);
      },
      onDone: ({ fileId, version }) => {
        progress.bar.value = 100;
        result.replaceChildren(
          h("a", { href: `/files/${fileId}`, class: "open-upload" }, `Open ${file.name}`),
          h("span", { class: "hint" }, ` (version ${version})`),
        );
        void showUnfinished();
        options.onDone(fileId);
      },
    });
    active = upload;
    pause.addEventListener("click", () => {
      if (upload.state === "uploading") void upload.pause();
      else upload.resume();
    });
    cancel.addEventListener("click", () => {
      void upload.cancel().then(() => {
        item.dataset.state = "cancelled";
        state.textContent = "Cancelled";
        pause.hidden = cancel.hidden = true;
        void showUnfinished();
      });
    });
    context.onLeave(() => {
      if (upload.state === "uploading") void upload.pause(); // resumable later from this browser
    });
    input.value = "";
    void upload.start();
  });

  void showUnfinished();
  return h(
    "section",
    { class: "card", "aria-labelledby": `${inputId}-title` },
    h("h2", { id: `${inputId}-title` }, options.fileId ? "Upload a new version" : "Upload"),
    h("label", { for: inputId }, options.fileId ? "Choose the new version's file" : "Choose a file to upload"),
    input,
    h("p", { class: "hint" }, "Large files can be paused and resumed, even after closing the page."),
    unfinished,
    items,
  );
}

// -- one file ----------------------------------------------------------------------------------

function geometryList(geometry: Geometry): HTMLElement {
  const units = typeof geometry.units === "string" ? ` ${geometry.units}` : "";
  const num = (value: unknown, digits = 2): string =>
    typeof value === "number" ? value.toLocaleString(undefined, { maximumFractionDigits: digits }) : "—";
  const size = Array.isArray(geometry.size) ? (geometry.size as number[]).map((v) => num(v)).join(" × ") + units : "—";
  const rows: [string, string][] = [
    ["Triangles", num(geometry.triangles, 0)],
    ["Vertices", num(geometry.vertices, 0)],
    ["Size (bounding box)", size],
    ["Volume", geometry.volume === null || geometry.volume === undefined ? "— (not watertight)" : `${num(geometry.volume)}${units}³`],
    ["Surface area", geometry.area === undefined ? "—" : `${num(geometry.area)}${units}²`],
    ["Watertight", geometry.watertight === undefined ? "—" : geometry.watertight ? "Yes" : "No"],
    ["Separate parts", num(geometry.components, 0)],
    ["Units", typeof geometry.units === "string" ? `${geometry.units}${geometry.units_source === "guess" ? " (guessed)" : ""}` : "—"],
  ];
  return h("dl", { class: "facts", id: "geometry" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function filePage(context: PageContext, fileId: string): HTMLElement {
  const { session } = context;
  const root = h("div", { class: "file-page" }, h("p", { role: "status" }, "Loading the file…"));
  const urls: string[] = [];
  let viewer: { destroy(): void } | null = null;
  context.onLeave(() => {
    viewer?.destroy();
    for (const url of urls) URL.revokeObjectURL(url);
  });

  const headingText = h("span", {});
  const scanArea = h("div", { class: "row" });
  const download = h("button", { type: "button", id: "download" }, "Download");
  const preview = h("div", { class: "preview", id: "preview" });
  const renderProgress = progressBar("render-progress", "Preview being made");
  renderProgress.wrap.hidden = true;
  const renderState = h("p", { role: "status", id: "render-state", class: "hint" });
  const geometryArea = h("div", {});
  const tagArea = h("div", {});
  const versionList = h("ul", { class: "list", id: "versions" });
  const sharesArea = h("div", {});
  let detail: FileDetail | null = null;
  let shownJob = "";

  const showPreview = async (jobId: string, outputs: Record<string, string>): Promise<void> => {
    if (shownJob === jobId) return;
    shownJob = jobId;
    delete preview.dataset.mode;
    preview.dataset.version = String(detail?.current_version ?? "");
    renderProgress.wrap.hidden = true;
    renderState.textContent = "";
    clear(preview);
    const name = detail?.name ?? "The part";
    const poster = h("img", { id: "preview-image", alt: `${name}, isometric view`, width: 480, height: 360 });
    const stage = h("div", { class: "stage" }, poster);
    const views = h("ul", { class: "views row", "aria-label": "Other views" });
    preview.append(stage, views);
    if ("view_iso" in outputs) {
      void fetchBlobUrl(session, outputUrl(jobId, "view_iso")).then((url) => {
        urls.push(url);
        poster.src = url;
      });
    }
    for (const [output, label] of Object.entries(VIEW_NAMES)) {
      if (!(output in outputs) || output === "view_iso") continue;
      const img = h("img", { alt: `${name}, ${label.toLowerCase()}`, width: 120, height: 90, class: "thumb" });
      views.append(h("li", {}, img));
      void fetchBlobUrl(session, outputUrl(jobId, output)).then((url) => {
        urls.push(url);
        img.src = url;
      });
    }
    if (!("model_glb" in outputs)) {
      preview.dataset.mode = "image";
      return;
    }
    try {
      const [{ showModel }, blob] = await Promise.all([import("../lib/viewer"), fetchBlob(session, outputUrl(jobId, "model_glb"))]);
      const model = await showModel(await blob.arrayBuffer(), `3D model of ${name}`);
      if (!stage.isConnected) {
        model.destroy();
        return;
      }
      viewer?.destroy();
      viewer = model;
      stage.replaceChildren(model.element);
      preview.dataset.mode = "3d";
      announce("3D preview ready");
    } catch {
      preview.dataset.mode = "image"; // no WebGL here, or the model did not load: the PNG stays
      stage.append(h("p", { class: "hint" }, "The 3D view is not available in this browser; showing the rendered image."));
    }
  };

  const renderDetail = (file: FileDetail): void => {
    detail = file;
    headingText.textContent = file.name;
    const current = file.current;
    scanArea.replaceChildren(
      scanBadge(current?.scan_status),
      h("span", { class: "hint" }, `${file.kind.toUpperCase()} · ${formatSize(file.size)} · version ${file.current_version}`),
    );
    download.disabled = !current?.downloadable;
    download.title = current?.downloadable ? "" : "Blocked until the virus scan passes";
    const previews = current?.metadata.previews;
    if (previews) void showPreview(previews.job_id, previews.outputs);
    else if (RENDERABLE.has(file.kind) && current && (current.scan_status === "clean" || current.scan_status === "unscanned")) {
      if (!renderProgress.bar.value) {
        renderProgress.wrap.hidden = false;
        renderState.textContent = "The preview is queued…";
      }
    } else if (RENDERABLE.has(file.kind)) {
      renderState.textContent = current?.scan_status === "pending" ? "The preview is made after the virus scan." : "No preview: the file did not pass the scan.";
    } else {
      preview.replaceChildren(h("p", { class: "hint" }, "No 3D preview for this kind of file."));
    }
    const geometry = current?.metadata.geometry;
    geometryArea.replaceChildren(h("h2", {}, "Geometry"), geometry ? geometryList(geometry) : h("p", { class: "hint" }, "Known once the preview is made."));
    renderTags(file);
  };

  const renderTags = (file: FileDetail): void => {
    const add = h("input", { id: "tag-add", name: "tag", maxlength: 80, required: true });
    const error = formError();
    tagArea.replaceChildren(
      h("h2", {}, "Tags"),
      h(
        "ul",
        { class: "row tags", id: "file-tags" },
        file.tags.map((t) =>
          h(
            "li",
            { class: "tag" },
            t,
            " ",
            h("button", { type: "button", class: "link-button", "aria-label": `Remove tag ${t}`, onclick: () => void changeTags({ remove: [t] }) }, "×"),
          ),
        ),
      ),
      h(
        "form",
        {
          class: "row",
          onsubmit: (event: Event) => {
            event.preventDefault();
            void changeTags({ add: [add.value.trim()] }).catch((e: unknown) => (error.textContent = errorText(e)));
          },
        },
        h("label", { for: "tag-add" }, "Add a tag"),
        add,
        h("button", { type: "submit" }, "Add"),
      ),
      error,
    );
  };

  const changeTags = async (change: { add?: string[]; remove?: string[] }): Promise<void> => {
    await session.request("PATCH", `/files/${fileId}/tags`, { body: change });
    await loadFile();
    announce("Tags saved");
    document.getElementById("tag-add")?.focus();
  };

  const loadFile = async (): Promise<void> => {
    renderDetail(await session.request<FileDetail>("GET", `/files/${fileId}`));
  };

  const loadVersions = async (): Promise<void> => {
    const { items } = await session.request<{ items: Version[] }>("GET", `/files/${fileId}/versions`);
    // news (a scan, a render) reloads the list: a keyboard user's focus stays on their button
    rebuildKeepingFocus(versionList, () => showVersions(items));
  };
  const showVersions = (items: Version[]): void => {
    clear(versionList);
    const currentNumber = detail?.current_version;
    for (const v of [...items].sort((a, b) => b.number - a.number)) {
      versionList.append(
        h(
          "li",
          { "data-version": v.number },
          h("strong", {}, `Version ${v.number}`, v.number === currentNumber ? " (current)" : ""),
          h(
            "div",
            { class: "hint" },
            `${v.original_name} · ${formatSize(v.size)} · ${formatDateTime(v.created_at)}`,
            v.restored_from ? ` · restored from version ${v.restored_from}` : "",
            " · ",
            SCAN_TEXT[v.scan_status],
          ),
          h(
            "div",
            { class: "row" },
            v.downloadable
              ? h(
                  "button",
                  { type: "button", onclick: () => void saveDownload(session, `/api/v1/files/${fileId}/versions/${v.number}/download`, v.original_name) },
                  "Download",
                  h("span", { class: "visually-hidden" }, ` version ${v.number}`),
                )
              : null,
            v.number === currentNumber
              ? null
              : h(
                  "button",
                  {
                    type: "button",
                    onclick: async () => {
                      try {
                        await session.request("POST", `/files/${fileId}/versions/${v.number}/restore`);
                        announce(`Version ${v.number} restored as a new version`);
                        await loadFile();
                        await loadVersions();
                      } catch (e) {
                        announce(errorText(e));
                      }
                    },
                  },
                  "Restore",
                  h("span", { class: "visually-hidden" }, ` version ${v.number}`),
                ),
          ),
        ),
      );
    }
  };

  // share links
  const shareList = h("ul", { class: "list", id: "shares" });
  const created = h("div", { id: "share-created", role: "status" });
  const loadShares = async (): Promise<void> => {
    const { items } = await session.request<{ items: Share[] }>("GET", `/files/${fileId}/shares`);
    clear(shareList);
    for (const s of items) {
      const state = s.revoked_at
        ? "revoked"
        : s.expires_at && new Date(s.expires_at) < new Date()
          ? "expired"
          : s.max_downloads !== null && s.download_count >= s.max_downloads
            ? "used up"
            : "active";
      const log = h("div", {});
      shareList.append(
        h(
          "li",
          { "data-share-id": s.id, "data-state": state },
          h("strong", {}, `Link of ${formatDateTime(s.created_at)}`),
          h(
            "div",
            { class: "hint" },
            `${state} · ${s.password_protected ? "password" : "no password"} · ${s.download_count}${s.max_downloads !== null ? ` of ${s.max_downloads}` : ""} downloads · ${s.expires_at ? `expires ${formatDateTime(s.expires_at)}` : "no expiry"}`,
          ),
          h(
            "div",
            { class: "row" },
            h(
              "button",
              {
                type: "button",
                onclick: async () => {
                  let accesses: ShareAccess[];
                  try {
                    ({ items: accesses } = await session.request<{ items: ShareAccess[] }>("GET", `/files/${fileId}/shares/${s.id}/accesses`));
                  } catch (e) {
                    log.replaceChildren(h("p", { class: "error" }, errorText(e)));
                    return;
                  }
                  log.replaceChildren(
                    accesses.length
                      ? h(
                          "table",
                          { class: "access-log" },
                          h("caption", {}, "Access log"),
                          h("thead", {}, h("tr", {}, ["When", "Address", "Browser", "Outcome"].map((c) => h("th", { scope: "col" }, c)))),
                          h(
                            "tbody",
                            {},
                            accesses.map((a) => h("tr", {}, h("td", {}, formatDateTime(a.at)), h("td", {}, a.ip), h("td", {}, a.user_agent.slice(0, 60)), h("td", {}, a.outcome))),
                          ),
                        )
                      : h("p", { class: "hint" }, "Nobody has used this link yet."),
                  );
                },
              },
              "Access log",
            ),
            s.revoked_at
              ? null
              : h(
                  "button",
                  {
                    type: "button",
                    onclick: async () => {
                      await session.request("DELETE", `/files/${fileId}/shares/${s.id}`);
                      announce("Link revoked");
                      await loadShares();
                    },
                  },
                  "Revoke",
                ),
          ),
          log,
        ),
      );
    }
    if (!items.length) shareList.append(h("li", {}, "No share links yet."));
  };
  const sharePassword = field("Password (optional, 8 characters or more)", "share_password", { type: "password", autocomplete: "new-password", minlength: 8 });
  const shareExpiry = h(
    "select",
    { id: "share-expiry", name: "expiry" },
    h("option", { value: "86400" }, "1 day"),
    h("option", { value: "604800", selected: true }, "7 days"),
    h("option", { value: "2592000" }, "30 days"),
    h("option", { value: "7776000" }, "90 days"),
  );
  const shareLimit = h("input", { id: "share-limit", name: "max_downloads", type: "number", min: 1, max: 1000000, inputmode: "numeric" });
  const shareError = formError();
  const shareForm = h(
    "form",
    {
      class: "stack",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        shareError.textContent = "";
        try {
          const body: Record<string, unknown> = { expires_in_seconds: Number(shareExpiry.value) };
          if (sharePassword.input.value) body.password = sharePassword.input.value;
          if (shareLimit.value) body.max_downloads = Number(shareLimit.value);
          const made = await session.request<ShareCreated>("POST", `/files/${fileId}/shares`, { body });
          const url = new URL(made.url, window.location.origin).toString();
          const box = h("input", { id: "share-url", readonly: true, value: url, "aria-label": "Share link" });
          const copy = h(
            "button",
            {
              type: "button",
              onclick: async () => {
                try {
                  await navigator.clipboard.writeText(url);
                  announce("Link copied");
                } catch {
                  box.select();
                  announce("Select the link and copy it");
                }
              },
            },
            "Copy link",
          );
          created.replaceChildren(h("p", { class: "success" }, "Link created. It is shown only now:"), h("div", { class: "row" }, box, copy));
          sharePassword.input.value = "";
          shareLimit.value = "";
          await loadShares();
        } catch (e) {
          shareError.textContent = errorText(e);
        }
      },
    },
    shareError,
    sharePassword.wrap,
    h("div", {}, h("label", { for: "share-expiry" }, "Expires after"), shareExpiry),
    h("div", {}, h("label", { for: "share-limit" }, "Download limit (optional)"), shareLimit),
    h("button", { type: "submit" }, "Create share link"),
  );
  sharesArea.append(h("h2", {}, "Share links"), shareForm, created, shareList);

  // live: scan and render of this file
  const mine = (event: { file_id: string }) => event.file_id === fileId;
  listen<RenderEvent>(context, "render:progress", (event) => {
    if (!mine(event)) return;
    renderProgress.wrap.hidden = false;
    renderProgress.bar.value = event.progress ?? 0;
    renderProgress.text.textContent = `${event.progress ?? 0}% · ${event.stage ?? ""}`;
    renderState.textContent = "Making the preview…";
  });
  listen<RenderEvent>(context, "render:completed", (event) => {
    if (!mine(event)) return;
    renderProgress.bar.value = 100;
    void loadFile().then(() => announce("The preview is ready"));
  });
  listen<RenderEvent>(context, "render:failed", (event) => {
    if (!mine(event)) return;
    renderProgress.wrap.hidden = true;
    renderState.textContent = `The preview could not be made (${event.error_code ?? "error"}).`;
  });
  listen<ScanEvent>(context, "file:scanned", (event) => {
    if (mine(event)) void loadFile().then(loadVersions);
  });
  // the file's room (the owner's tabs get its events anyway; a grantee or staff need the room),
  // joined again after every reconnect
  context.onLeave(
    context.socket.onState((state) => {
      if (state === "online") void context.socket.call("subscribe", { room: `file:${fileId}` }).catch(() => undefined);
    }),
  );

  download.addEventListener("click", () => {
    if (detail) void saveDownload(session, `/api/v1/files/${fileId}/download`, detail.name).catch((e: unknown) => announce(errorText(e)));
  });

  void loadFile()
    .then(async () => {
      root.replaceChildren(
        h("p", {}, h("a", { href: detail?.folder_id ? `/files?folder=${detail.folder_id}` : "/files" }, "← All files")),
        h("h1", {}, headingText),
        h("div", { class: "row" }, scanArea, download),
        h("section", { class: "card", "aria-labelledby": "preview-title" }, h("h2", { id: "preview-title" }, "Preview"), renderProgress.wrap, renderState, preview),
        h("div", { class: "file-columns" }, h("section", { class: "card" }, geometryArea), h("section", { class: "card" }, tagArea)),
        h("section", { class: "card", "aria-labelledby": "versions-title" }, h("h2", { id: "versions-title" }, "Versions"), versionList),
        uploadPanel(context, {
          folderId: null,
          fileId,
          onDone: () => void loadFile().then(loadVersions),
        }),
        h("section", { class: "card" }, sharesArea),
      );
      await loadVersions();
      await loadShares();
    })
    .catch((e: unknown) => root.replaceChildren(h("h1", {}, "File"), h("p", { class: "error", role: "alert" }, errorText(e))));
  return root;
}
