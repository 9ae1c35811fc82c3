// The staff dashboard: the support queue (unassigned first), assignment, a console with several
// conversations at once, canned replies, who is online, the staff member's own status, and the
// live `dashboard:event` feed filtered by type.

import "../styles.css";
import { Session } from "../lib/api";
import { ChatStore } from "../lib/chat";
import { ChatView } from "../lib/chatview";
import { announce, clear, connectionBanner, errorText, formatTime, h, shortId } from "../lib/dom";
import { HubSocket } from "../lib/socket";
import type { CannedReply, Conversation, DashboardEvent, Presence, User } from "../lib/types";
import { isStaff } from "../lib/types";
import { PlotsPanel, RenderFarmPanel, SecurityPanel, customerContext } from "./panels";

const EVENT_TYPES = [
  "chat.conversation_created",
  "chat.conversation_assigned",
  "chat.conversation_unassigned",
  "file.uploaded",
  "file.scanned",
  "render.progress",
  "render.completed",
  "render.failed",
  "order.created",
  "order.paid",
  "order.refunded",
  "form.submitted",
  "inventory.low_stock",
  "security.event",
];
const FEED_LIMIT = 200;
const MAX_CONSOLES = 4;

const session = new Session();
const app = document.getElementById("app") as HTMLElement;

function signInPage(message = ""): void {
  const error = h("p", { class: "error", role: "alert" }, message);
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "email", required: true });
  const password = h("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        error.textContent = "";
        try {
          const user = await session.login(email.value, password.value);
          if (!isStaff(user)) {
            await session.logout();
            error.textContent = "The dashboard is for staff accounts.";
            return;
          }
          startDashboard(user);
        } catch (e) {
          error.textContent = errorText(e);
        }
      },
    },
    error,
    h("div", {}, h("label", { for: "email" }, "Email"), email),
    h("div", {}, h("label", { for: "password" }, "Password"), password),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  app.replaceChildren(
    h("header", { class: "topbar" }, h("a", { class: "brand", href: "/" }, "IdEinstein dashboard")),
    h(
      "main",
      { id: "main", tabindex: -1 },
      h("div", { class: "card narrow" }, h("h1", {}, "Staff sign-in"), form, h("p", {}, h("a", { href: "/" }, "Customer portal"))),
    ),
  );
}

function startDashboard(me: User): void {
  const socket = new HubSocket(session);
  const chat = new ChatStore(socket, session, me);
  const queue = new Map<string, Conversation>();
  const presence = new Map<string, Presence>();
  const consoles = new Map<string, ChatView>();
  const shown = new Set(EVENT_TYPES);
  const events: DashboardEvent[] = [];
  let canned: CannedReply[] = [];
  const farm = new RenderFarmPanel(session);
  const plots = new PlotsPanel(session, farm);
  const isAdmin = me.role === "admin" || me.role === "super_admin";
  const security = new SecurityPanel(session);
  const names = new Map<string, string>(); // from presence:list

  // -- names ---------------------------------------------------------------------------------
  const customers = new Set<string>();
  const nameOf = (userId: string | null): string => {
    if (userId === null) return "System";
    if (userId === me.id) return "You";
    const known = names.get(userId);
    const kind = customers.has(userId) ? "Customer" : "Staff";
    return known ? `${kind} ${known}` : `${kind} ${shortId(userId)}`;
  };

  // -- layout --------------------------------------------------------------------------------
  const statusSelect = h(
    "select",
    { id: "staff-status", name: "status" },
    h("option", { value: "online" }, "Online"),
    h("option", { value: "away" }, "Away"),
    h("option", { value: "busy" }, "Busy"),
  );
  const queueList = h("ul", { class: "list queue", id: "queue" });
  const onlineList = h("ul", { class: "list", id: "online" });
  const consoleArea = h("div", { class: "consoles", id: "consoles" });
  const consoleEmpty = h("p", { class: "hint" }, "Open conversations from the queue; up to four side by side.");
  const feedList = h("ol", { class: "list feed", id: "event-feed", "aria-live": "off", tabindex: 0, "aria-label": "Events" });
  const filters = h("fieldset", {}, h("legend", {}, "Show event types"));
  const cannedList = h("ul", { class: "list", id: "canned" });

  for (const type of EVENT_TYPES) {
    const id = `filter-${type.replace(/\./g, "-")}`;
    const box = h("input", { type: "checkbox", id, value: type, checked: true });
    box.addEventListener("change", () => {
      if (box.checked) shown.add(type);
      else shown.delete(type);
      renderFeed();
    });
    filters.append(h("label", { for: id }, box, type));
  }

  const cannedForm = (() => {
    const shortcut = h("input", { id: "canned-shortcut", name: "shortcut", required: true, pattern: "[a-z0-9_-]+", maxlength: 40 });
    const title = h("input", { id: "canned-title", name: "title", required: true, maxlength: 120 });
    const body = h("textarea", { id: "canned-body", name: "body", required: true, rows: 2 });
    const error = h("p", { class: "error", role: "alert" });
    return h(
      "form",
      {
        class: "stack",
        onsubmit: async (event: Event) => {
          event.preventDefault();
          error.textContent = "";
          try {
            await session.request("POST", "/canned-replies", {
              body: { shortcut: shortcut.value, title: title.value, body: body.value },
            });
            shortcut.value = title.value = body.value = "";
            await loadCanned();
            announce("Canned reply saved");
          } catch (e) {
            error.textContent = errorText(e);
          }
        },
      },
      h("h3", {}, "Add a canned reply"),
      error,
      h("div", {}, h("label", { for: "canned-shortcut" }, "Shortcut (a-z, 0-9, - and _)"), shortcut),
      h("div", {}, h("label", { for: "canned-title" }, "Title"), title),
      h("div", {}, h("label", { for: "canned-body" }, "Text"), body),
      h("button", { type: "submit" }, "Save"),
    );
  })();

  app.replaceChildren(
    h(
      "header",
      { class: "topbar" },
      h("a", { class: "brand", href: "/dashboard" }, "IdEinstein dashboard"),
      h(
        "div",
        { class: "row" },
        h("label", { for: "staff-status" }, "My status"),
        statusSelect,
      ),
      h(
        "div",
        { class: "row" },
        h("span", {}, me.display_name || me.email),
        h("a", { href: "/" }, "Portal"),
        h(
          "button",
          {
            type: "button",
            class: "link-button",
            onclick: async () => {
              socket.stop();
              await session.logout().catch(() => undefined);
              signInPage();
            },
          },
          "Sign out",
        ),
      ),
    ),
    connectionBanner(socket),
    h(
      "main",
      { id: "main", tabindex: -1 },
      h("h1", { class: "visually-hidden" }, "Staff dashboard"),
      h(
        "div",
        { class: "dash" },
        h(
          "div",
          {},
          h("section", { class: "card", "aria-labelledby": "queue-title" }, h("h2", { id: "queue-title" }, "Queue"), queueList),
          h("section", { class: "card", "aria-labelledby": "online-title" }, h("h2", { id: "online-title" }, "Online now"), onlineList),
          h(
            "section",
            { class: "card", "aria-labelledby": "canned-heading" },
            h("h2", { id: "canned-heading" }, "Canned replies"),
            cannedList,
            cannedForm,
          ),
        ),
        h(
          "div",
          {},
          h("section", { "aria-labelledby": "console-title" }, h("h2", { id: "console-title" }, "Console"), consoleEmpty, consoleArea),
          h(
            "section",
            { class: "card", "aria-labelledby": "feed-title" },
            h("h2", { id: "feed-title" }, "Live events"),
            filters,
            feedList,
          ),
          farm.element,
          isAdmin ? security.element : null,
          plots.element,
        ),
      ),
    ),
  );

  // -- queue ---------------------------------------------------------------------------------
  function renderQueue(): void {
    clear(queueList);
    const items = [...queue.values()]
      .filter((c) => c.status !== "resolved")
      .sort((a, b) => {
        if ((a.assignee_id === null) !== (b.assignee_id === null)) return a.assignee_id === null ? -1 : 1;
        return (a.last_message_at ?? a.created_at).localeCompare(b.last_message_at ?? b.created_at);
      });
    for (const c of items) {
      customers.add(c.customer_id);
      const assigned = c.assignee_id === null ? "Unassigned" : c.assignee_id === me.id ? "Assigned to you" : `Assigned to ${nameOf(c.assignee_id)}`;
      queueList.append(
        h(
          "li",
          { class: c.assignee_id === null ? "unassigned" : "", "data-conversation-id": c.id },
          h("h3", {}, c.subject || "Support conversation"),
          h("p", { class: "hint" }, `${nameOf(c.customer_id)} · ${c.status} · `, h("span", { class: "tag" }, assigned)),
          h(
            "div",
            { class: "row" },
            h("button", { type: "button", onclick: () => void openConsole(c.id) }, "Open", h("span", { class: "visually-hidden" }, ` ${c.subject}`)),
            c.assignee_id === me.id
              ? null
              : h("button", { type: "button", onclick: () => void assign(c.id, me.id) }, "Assign to me", h("span", { class: "visually-hidden" }, ` ${c.subject}`)),
          ),
        ),
      );
    }
    if (!items.length) queueList.append(h("li", {}, "The queue is empty."));
  }

  function upsertQueue(c: Conversation): void {
    queue.set(c.id, c);
    chat.upsertConversation(c);
    renderQueue();
  }

  async function loadQueue(): Promise<void> {
    const reply = await socket.call<{ conversations: Conversation[] }>("chat:queue", {});
    for (const c of reply.conversations) queue.set(c.id, c);
    for (const c of reply.conversations) chat.upsertConversation(c);
    renderQueue();
  }

  async function assign(conversationId: string, assigneeId: string | null): Promise<void> {
    try {
      const reply = await socket.call<{ conversation: Conversation }>("chat:assign", {
        conversation_id: conversationId,
        assignee_id: assigneeId,
      });
      upsertQueue(reply.conversation);
      announce(assigneeId ? "Conversation assigned" : "Conversation unassigned");
    } catch (e) {
      announce(`Could not assign: ${errorText(e)}`);
    }
  }

  // -- consoles ------------------------------------------------------------------------------
  async function openConsole(conversationId: string): Promise<void> {
    const existing = consoles.get(conversationId);
    if (existing) {
      existing.focus();
      return;
    }
    if (consoles.size >= MAX_CONSOLES) {
      const [oldest] = consoles.keys();
      if (oldest) closeConsole(oldest);
    }
    if (socket.socket.connected) {
      await socket.call("subscribe", { room: `conversation:${conversationId}` }).catch(() => undefined);
    }
    const conversation = queue.get(conversationId) ?? chat.threads.get(conversationId)?.conversation ?? null;
    const close = h("button", { type: "button", onclick: () => closeConsole(conversationId) }, "Close");
    const resolve = h(
      "button",
      {
        type: "button",
        onclick: async () => {
          try {
            const reply = await socket.call<{ conversation: Conversation }>("chat:status", {
              conversation_id: conversationId,
              status: "resolved",
            });
            upsertQueue(reply.conversation);
            announce("Conversation resolved");
          } catch (e) {
            announce(`Could not resolve: ${errorText(e)}`);
          }
        },
      },
      "Resolve",
    );
    const take = h("button", { type: "button", onclick: () => void assign(conversationId, me.id) }, "Assign to me");
    const showTake = () => {
      const current = queue.get(conversationId) ?? chat.threads.get(conversationId)?.conversation;
      take.hidden = current?.assignee_id === me.id;
    };
    showTake();
    const stopWatching = chat.onChange((id) => {
      if (id === conversationId) showTake();
    });
    const view = new ChatView(chat, conversationId, {
      heading: `${conversation?.subject || "Conversation"} · ${conversation ? nameOf(conversation.customer_id) : ""}`,
      headingLevel: 3,
      nameOf,
      actions: [
        h("div", { class: "row" }, take, resolve, close),
        conversation ? customerContext(session, conversation.customer_id) : null,
      ].filter((a): a is HTMLElement => a !== null),
      composerExtras: (insert) => cannedPicker(insert),
    });
    view.element.addEventListener("console:closed", stopWatching);
    consoles.set(conversationId, view);
    consoleArea.append(view.element);
    consoleEmpty.hidden = true;
    view.focus();
  }

  function closeConsole(conversationId: string): void {
    consoles.get(conversationId)?.element.dispatchEvent(new Event("console:closed"));
    consoles.get(conversationId)?.destroy();
    consoles.delete(conversationId);
    consoleEmpty.hidden = consoles.size > 0;
  }

  // -- canned replies ------------------------------------------------------------------------
  const pickers = new Set<HTMLSelectElement>();
  function fillPicker(select: HTMLSelectElement): void {
    select.replaceChildren(h("option", { value: "" }, "Insert a canned reply…"));
    for (const c of canned) select.append(h("option", { value: c.id }, `/${c.shortcut} · ${c.title}`));
  }
  function cannedPicker(insert: (text: string) => void): HTMLElement {
    const id = `canned-pick-${Math.random().toString(36).slice(2, 8)}`;
    const select = h("select", { id, class: "canned-picker" });
    fillPicker(select);
    pickers.add(select);
    select.addEventListener("change", () => {
      const reply = canned.find((c) => c.id === select.value);
      if (reply) insert(reply.body);
      select.value = "";
    });
    return h("div", { class: "row" }, h("label", { for: id, class: "visually-hidden" }, "Canned reply"), select);
  }
  async function loadCanned(): Promise<void> {
    const reply = await session.request<{ items: CannedReply[] }>("GET", "/canned-replies");
    canned = reply.items;
    clear(cannedList);
    for (const c of canned) cannedList.append(h("li", {}, h("strong", {}, `/${c.shortcut}`), ` ${c.title}`));
    if (!canned.length) cannedList.append(h("li", {}, "None yet."));
    for (const select of pickers) {
      if (select.isConnected) fillPicker(select);
      else pickers.delete(select);
    }
  }

  // -- presence ------------------------------------------------------------------------------
  function renderOnline(): void {
    clear(onlineList);
    const online = [...presence.values()].filter((p) => p.online);
    for (const p of online) {
      onlineList.append(
        h(
          "li",
          { "data-user-id": p.user_id },
          h("span", { class: "presence-dot", "data-status": p.status, "aria-hidden": "true" }),
          `${nameOf(p.user_id)} · ${p.status}${p.activity === "idle" ? " (idle)" : ""}`,
        ),
      );
    }
    if (!online.length) onlineList.append(h("li", {}, "Nobody else yet."));
  }

  statusSelect.addEventListener("change", async () => {
    try {
      const reply = await socket.call<{ presence: Presence }>("presence:set", { status: statusSelect.value });
      presence.set(me.id, reply.presence);
      renderOnline();
      announce(`Your status is ${statusSelect.value}`);
    } catch (e) {
      announce(`Could not change status: ${errorText(e)}`);
    }
  });

  // -- live feed -----------------------------------------------------------------------------
  function renderFeed(): void {
    clear(feedList);
    const visible = events.filter((e) => shown.has(e.type));
    for (const e of visible) {
      feedList.append(
        h(
          "li",
          { "data-type": e.type },
          h("strong", {}, e.type),
          " ",
          h("time", { datetime: e.event.occurred_at, class: "hint" }, formatTime(e.event.occurred_at)),
          h("div", {}, h("code", {}, JSON.stringify(e.event.data))),
        ),
      );
    }
    if (!visible.length) feedList.append(h("li", {}, "No events yet."));
  }

  // -- socket --------------------------------------------------------------------------------
  socket.on<Conversation>("chat:conversation", (c) => upsertQueue(c));
  socket.on<Conversation>("chat:assigned", (c) => {
    upsertQueue(c);
    if (c.assignee_id === me.id) announce(`Conversation "${c.subject}" was assigned to you`);
  });
  socket.on<Presence>("presence", (p) => {
    presence.set(p.user_id, p);
    renderOnline();
  });
  socket.on<DashboardEvent>("dashboard:event", (e) => {
    events.unshift(e);
    events.length = Math.min(events.length, FEED_LIMIT);
    renderFeed();
    if (farm.onEvent(e) && e.type === "render.completed") plots.render();
    if (isAdmin) security.onEvent(e);
  });
  socket.afterConnect(async () => {
    await loadQueue();
    await socket.call("subscribe", { room: "dashboard" });
    for (const id of consoles.keys()) {
      await socket.call("subscribe", { room: `conversation:${id}` }).catch(() => undefined);
    }
    const reply = await socket.call<{ presence: Presence }>("presence:set", { status: statusSelect.value });
    presence.set(me.id, reply.presence);
    // who is online now (later changes arrive as `presence` events)
    const snapshot = await socket.call<{ users: (Presence & { display_name: string; role: string })[] }>("presence:list", {});
    for (const u of snapshot.users) {
      if (u.display_name) names.set(u.user_id, u.display_name);
      if (u.role === "customer") customers.add(u.user_id);
      if (u.user_id !== me.id) presence.set(u.user_id, u);
    }
    renderOnline();
    const all = new Map<string, Conversation>(queue);
    for (const thread of chat.threads.values()) if (thread.conversation) all.set(thread.conversation.id, thread.conversation);
    void plots.load([...all.values()]).catch(() => undefined);
  });
  socket.onState((state) => {
    if (state === "signed-out") signInPage("Your session has ended. Please sign in again.");
  });

  renderQueue();
  renderOnline();
  renderFeed();
  void loadCanned().catch(() => undefined);
  if (isAdmin) void security.load().catch(() => undefined);
  void farm.load().then(() => plots.render());
  socket.start();
}

async function boot(): Promise<void> {
  let user: User | null = null;
  try {
    user = await session.resume();
  } catch {
    user = null;
  }
  if (user && isStaff(user)) startDashboard(user);
  else signInPage(user ? "The dashboard is for staff accounts." : "");
}

void boot();
