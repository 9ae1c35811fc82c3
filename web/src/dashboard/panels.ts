// Dashboard panels beyond the chat: the customer's context beside a conversation (their files
// and orders), the render farm's jobs, security events (admins), and the day's plots.
//
// The render farm panel starts from `GET /render-jobs` (the latest jobs) and is kept current by
// the live `render.*` and `file.*` events.

import type { Session } from "../lib/api";
import { type Bar, barChart, hourlyBuckets } from "../lib/charts";
import { clear, formatTime, h, shortId } from "../lib/dom";
import { type FileItem, formatSize } from "../lib/files";
import type { Conversation, DashboardEvent, Message } from "../lib/types";

interface OrderSummary {
  id: string;
  user_id: string;
  status: string;
  total_amount: number;
  currency: string;
  created_at: string;
}

function money(amount: number, currency: string): string {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(amount / 100);
  } catch {
    return `${(amount / 100).toFixed(2)} ${currency}`;
  }
}

/** The customer's recent files and orders, for the console of one of their conversations. */
export function customerContext(session: Session, customerId: string, headingLevel: "h4" = "h4"): HTMLElement {
  const files = h("ul", { class: "list context-files" }, h("li", {}, "Loading…"));
  const orders = h("ul", { class: "list context-orders" }, h("li", {}, "Loading…"));
  void session
    .request<{ items: FileItem[] }>("GET", "/files", { query: { owner_id: customerId, order: "-updated_at", limit: 5 } })
    .catch(() => session.request<{ items: FileItem[] }>("GET", "/files", { query: { owner_id: customerId, limit: 5 } }))
    .then(({ items }) => {
      files.replaceChildren(...items.map((f) => h("li", {}, `${f.name} · ${f.kind.toUpperCase()} · ${formatSize(f.size)} · v${f.current_version}`)));
      if (!items.length) files.append(h("li", {}, "No files."));
    })
    .catch(() => files.replaceChildren(h("li", {}, "Files not available.")));
  void session
    .request<{ items: OrderSummary[] }>("GET", "/orders", { query: { user_id: customerId, limit: 5 } })
    .then(({ items }) => {
      orders.replaceChildren(...items.map((o) => h("li", {}, `Order ${shortId(o.id)} · ${o.status} · ${money(o.total_amount, o.currency)}`)));
      if (!items.length) orders.append(h("li", {}, "No orders."));
    })
    .catch(() => orders.replaceChildren(h("li", {}, "Orders not available.")));
  return h(
    "div",
    { class: "context-panel", "aria-label": "The customer's files and orders", role: "group" },
    h(headingLevel, {}, "Their files"),
    files,
    h(headingLevel, {}, "Their orders"),
    orders,
  );
}

// -- render farm ---------------------------------------------------------------------------------

interface RenderJobBody {
  id: string;
  file_id: string;
  status: "queued" | "running" | "succeeded" | "failed";
  progress: number;
  stage: string;
  error_code: string;
  created_at: string;
  finished_at: string | null;
}

interface JobRow {
  jobId: string;
  fileId: string;
  status: "queued" | "running" | "succeeded" | "failed";
  progress: number;
  stage: string;
  errorCode: string;
  at: string;
}

export class RenderFarmPanel {
  readonly element: HTMLElement;
  readonly completions: string[] = []; // times of render.completed, for the throughput plot
  private readonly jobs = new Map<string, JobRow>();
  private readonly waiting = new Map<string, string>(); // file id -> name: scanned, no job yet
  private readonly counts: HTMLElement;
  private readonly table: HTMLTableSectionElement;

  constructor(private readonly session: Session) {
    this.counts = h("p", { id: "render-counts" });
    this.table = h("tbody", {});
    this.element = h(
      "section",
      { class: "card", "aria-labelledby": "farm-title", id: "render-farm" },
      h("h2", { id: "farm-title" }, "Render farm"),
      h("p", { class: "hint" }, "The latest jobs, kept current by live events."),
      this.counts,
      h(
        "div",
        { class: "table-scroll", tabindex: 0, role: "region", "aria-label": "Render jobs table" },
        h(
          "table",
          { class: "jobs" },
          h("caption", { class: "visually-hidden" }, "Render jobs"),
          h("thead", {}, h("tr", {}, ["Job", "File", "Status", "Progress", "Error"].map((c) => h("th", { scope: "col" }, c)))),
          this.table,
        ),
      ),
    );
    this.render();
  }

  /** The latest jobs from the API; a job the live events told of meanwhile keeps its row. */
  async load(): Promise<void> {
    try {
      const { items } = await this.session.request<{ items: RenderJobBody[] }>("GET", "/render-jobs", { query: { limit: 50 } });
      const today = new Date();
      today.setHours(0, 0, 0, 0);
      for (const job of items) {
        if (this.jobs.has(job.id)) continue;
        const at = job.finished_at ?? job.created_at;
        this.jobs.set(job.id, { jobId: job.id, fileId: job.file_id, status: job.status, progress: job.progress, stage: job.stage, errorCode: job.error_code, at });
        this.waiting.delete(job.file_id);
        if (job.status === "succeeded" && job.finished_at && new Date(job.finished_at) >= today) this.completions.push(job.finished_at);
      }
    } catch {
      // the live events still fill the panel
    }
    this.render();
  }

  onEvent(e: DashboardEvent): boolean {
    const data = e.event.data;
    const jobId = typeof data.job_id === "string" ? data.job_id : "";
    const fileId = typeof data.file_id === "string" ? data.file_id : "";
    if (e.type === "file.uploaded" && fileId) {
      this.waiting.set(fileId, typeof data.name === "string" ? data.name : shortId(fileId));
    } else if (e.type.startsWith("render.") && jobId) {
      const row = this.jobs.get(jobId) ?? { jobId, fileId, status: "running", progress: 0, stage: "", errorCode: "", at: e.event.occurred_at };
      if (e.type === "render.progress") {
        if (row.status === "queued") row.status = "running";
        row.progress = Math.max(row.progress, Number(data.progress ?? 0));
        row.stage = String(data.stage ?? "");
      } else if (e.type === "render.completed") {
        row.status = "succeeded";
        row.progress = 100;
        row.stage = "done";
        this.completions.push(e.event.occurred_at);
      } else if (e.type === "render.failed") {
        row.status = "failed";
        row.errorCode = String(data.error_code ?? "");
      }
      row.at = e.event.occurred_at;
      this.jobs.set(jobId, row);
      this.waiting.delete(fileId);
    } else {
      return false;
    }
    this.render();
    return true;
  }

  private render(): void {
    const rows = [...this.jobs.values()];
    const queued = rows.filter((r) => r.status === "queued").length;
    const running = rows.filter((r) => r.status === "running").length;
    const failed = rows.filter((r) => r.status === "failed").length;
    const done = rows.filter((r) => r.status === "succeeded").length;
    this.counts.textContent = `Waiting for scan or queued: ${this.waiting.size + queued} · running: ${running} · failed: ${failed} · done: ${done}`;
    clear(this.table);
    for (const name of this.waiting.values()) {
      this.table.append(h("tr", { "data-status": "queued" }, h("td", {}, "—"), h("td", {}, name), h("td", {}, "queued"), h("td", {}, "0%"), h("td", {}, "")));
    }
    for (const r of rows.sort((a, b) => b.at.localeCompare(a.at)).slice(0, 30)) {
      this.table.append(
        h(
          "tr",
          { "data-status": r.status, "data-job-id": r.jobId },
          h("td", {}, shortId(r.jobId)),
          h("td", {}, shortId(r.fileId)),
          h("td", {}, r.status),
          h("td", {}, `${r.progress}%${r.stage && r.status === "running" ? ` · ${r.stage}` : ""}`),
          h("td", {}, r.errorCode ? h("code", {}, r.errorCode) : ""),
        ),
      );
    }
  }
}

// -- security events -----------------------------------------------------------------------------

interface SecurityRow {
  id: string;
  kind: string;
  email: string;
  ip: string;
  data: Record<string, unknown>;
  created_at: string;
}

/** The security log (admins): the latest from `GET /admin/security-events`, then live. */
export class SecurityPanel {
  readonly element: HTMLElement;
  private readonly list: HTMLElement;
  private readonly seen = new Set<string>();

  constructor(private readonly session: Session) {
    this.list = h("ul", { class: "list", id: "security-events" }, h("li", {}, "No security events yet."));
    this.element = h(
      "section",
      { class: "card", "aria-labelledby": "security-title" },
      h("h2", { id: "security-title" }, "Security events"),
      this.list,
    );
  }

  async load(): Promise<void> {
    const { items } = await this.session.request<{ items: SecurityRow[] }>("GET", "/admin/security-events", { query: { limit: 20 } });
    for (const row of [...items].reverse()) this.add(row);
  }

  onEvent(e: DashboardEvent): void {
    if (e.type !== "security.event") return;
    const { id, kind, ip, ...rest } = e.event.data;
    this.add({ id: String(id ?? e.event.id), kind: String(kind ?? ""), email: "", ip: String(ip ?? ""), data: rest, created_at: e.event.occurred_at });
  }

  private add(row: SecurityRow): void {
    if (this.seen.has(row.id)) return;
    if (this.seen.size === 0) clear(this.list);
    this.seen.add(row.id);
    const detail = { ...(row.email ? { email: row.email } : {}), ...(row.ip ? { ip: row.ip } : {}), ...row.data };
    this.list.prepend(
      h(
        "li",
        { "data-kind": row.kind },
        h("strong", {}, row.kind || "security event"),
        " ",
        h("time", { datetime: row.created_at, class: "hint" }, formatTime(row.created_at)),
        h("div", {}, h("code", {}, JSON.stringify(detail))),
      ),
    );
    while (this.list.childElementCount > 50) this.list.lastElementChild?.remove();
  }
}

// -- plots ---------------------------------------------------------------------------------------

/** Minutes from a conversation's first customer message to the first staff reply, or null. */
function firstResponse(conversation: Conversation, messages: Message[]): { at: string; minutes: number } | null {
  const sorted = [...messages].sort((a, b) => a.seq - b.seq);
  const asked = sorted.find((m) => m.sender_id === conversation.customer_id);
  if (!asked) return null;
  const answered = sorted.find((m) => m.seq > asked.seq && m.sender_id !== null && m.sender_id !== conversation.customer_id);
  if (!answered) return null;
  const minutes = (new Date(answered.created_at).getTime() - new Date(asked.created_at).getTime()) / 60_000;
  return { at: asked.created_at, minutes: Math.round(minutes * 10) / 10 };
}

export class PlotsPanel {
  readonly element: HTMLElement;
  private readonly area: HTMLElement;
  private conversations: Conversation[] = [];
  private responses: { at: string; minutes: number }[] = [];

  constructor(
    private readonly session: Session,
    private readonly farm: RenderFarmPanel,
  ) {
    this.area = h("div", { class: "charts" });
    this.element = h(
      "section",
      { class: "card", "aria-labelledby": "plots-title", id: "plots" },
      h("h2", { id: "plots-title" }, "Today"),
      h("p", { class: "hint" }, "Conversations in the queue and yours, by the hour they started; first-response times from their messages; renders finished today."),
      this.area,
    );
  }

  async load(conversations: Conversation[]): Promise<void> {
    const today = new Date();
    today.setHours(0, 0, 0, 0);
    this.conversations = conversations.filter((c) => new Date(c.created_at) >= today);
    const responses: { at: string; minutes: number }[] = [];
    for (const c of this.conversations.slice(0, 30)) {
      try {
        const page = await this.session.request<{ items: Message[] }>("GET", `/conversations/${c.id}/messages`, { query: { before_seq: 21, limit: 20 } });
        const found = firstResponse(c, page.items);
        if (found) responses.push(found);
      } catch {
        // not ours to read: skip it
      }
    }
    this.responses = responses;
    this.render();
  }

  render(): void {
    const conversations: Bar[] = hourlyBuckets(this.conversations, (c) => c.created_at);
    const response: Bar[] = hourlyBuckets(this.responses, (r) => r.at, (r) => r.minutes, "mean");
    const renders: Bar[] = hourlyBuckets(this.farm.completions, (at) => at);
    this.area.replaceChildren(
      barChart("Conversations started per hour", conversations, "conversations", "chart-conversations"),
      barChart("Mean first-response time per hour", response, "minutes", "chart-response"),
      barChart("Renders finished per hour", renders, "renders", "chart-renders"),
    );
  }
}
