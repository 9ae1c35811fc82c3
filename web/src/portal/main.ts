// The customer portal: accounts (register, verify, sign in with password or a provider, reset
// the password), live support chat, and the notification centre with web push opt-in.

import "../styles.css";
import { ApiError, Session } from "../lib/api";
import { ChatStore } from "../lib/chat";
import { ChatView } from "../lib/chatview";
import { actionForm, announce, clear, connectionBanner, errorText, formatDateTime, h } from "../lib/dom";
import { NotificationStore } from "../lib/notifications";
import { newClientMsgId } from "../lib/outbox";
import { disablePush, enablePush, pushState } from "../lib/push";
import { HubSocket } from "../lib/socket";
import type { Conversation, OAuthProvider, User } from "../lib/types";
import { isStaff } from "../lib/types";
import { filePage, filesPage } from "./files";
import { field, formError, navigate, onLinkClick } from "./forms";
import type { PageContext } from "./pagecontext";
import { ordersPage, shopPage } from "./shop";

const session = new Session();
const app = document.getElementById("app") as HTMLElement;

interface Live {
  socket: HubSocket;
  chat: ChatStore;
  notifications: NotificationStore;
  banner: HTMLElement;
}

let live: Live | null = null;
let currentView: ChatView | null = null;
let cleanups: (() => void)[] = []; // listeners of the page on screen

const SIGN_IN_ERRORS: Record<string, string> = {
  oauth_state_mismatch: "The sign-in took too long or was started elsewhere. Please try again.",
  oauth_token_invalid: "The provider's answer could not be checked. Please try again.",
  oauth_email_unverified: "Your provider has not verified your email address.",
  oauth_account_suspended: "This account is suspended.",
  oauth_provider_error: "The sign-in provider could not be reached. Please try again later.",
};

function startLive(user: User): Live {
  const socket = new HubSocket(session);
  const chat = new ChatStore(socket, session, user);
  const notifications = new NotificationStore(session, socket);
  notifications.attach(chat);
  const banner = connectionBanner(socket);
  socket.onState((state) => {
    if (state === "signed-out") void signOut(false);
  });
  // Know the conversations (and their last seq) before the first `sync`, which would otherwise
  // replay each of them from the start.
  void session
    .request<{ items: Conversation[] }>("GET", "/conversations")
    .then(({ items }) => {
      for (const c of items) chat.upsertConversation(c);
    })
    .catch(() => undefined)
    .finally(() => socket.start());
  void notifications.load().catch(() => undefined);
  return { socket, chat, notifications, banner };
}

async function signOut(callServer = true): Promise<void> {
  live?.socket.stop();
  live = null;
  if (callServer) await session.logout().catch(() => undefined);
  navigate("/sign-in");
}

// -- shell -------------------------------------------------------------------------------------

function navLink(path: string, label: string | (Node | string)[], current: boolean): HTMLLIElement {
  return h(
    "li",
    {},
    h("a", { href: path, "aria-current": current ? "page" : null }, ...(typeof label === "string" ? [label] : label)),
  );
}

function leavePage(): void {
  currentView?.destroy();
  currentView = null;
  for (const cleanup of cleanups) cleanup();
  cleanups = [];
}

function shell(path: string, content: HTMLElement): void {
  const user = session.user;
  const items: HTMLLIElement[] = [];
  if (user && live) {
    const badge = h("span", { class: "badge", id: "unread-badge", hidden: true });
    const updateBadge = () => {
      const unread = live?.notifications.unread() ?? 0;
      badge.textContent = String(unread);
      badge.hidden = unread === 0;
      badge.setAttribute("aria-label", `${unread} unread`);
    };
    cleanups.push(live.notifications.onChange(updateBadge));
    updateBadge();
    items.push(navLink("/chat", "Support chat", path.startsWith("/chat")));
    items.push(navLink("/files", "Files", path.startsWith("/files")));
    items.push(navLink("/shop", "Shop", path === "/shop"));
    items.push(navLink("/orders", "Orders", path.startsWith("/orders")));
    items.push(navLink("/notifications", ["Notifications", badge], path === "/notifications"));
    if (isStaff(user)) items.push(h("li", {}, h("a", { href: "/dashboard" }, "Staff dashboard")));
  } else {
    items.push(navLink("/sign-in", "Sign in", path === "/sign-in"));
    items.push(navLink("/register", "Create account", path === "/register"));
  }
  const account = user
    ? h(
        "div",
        { class: "row" },
        h("span", {}, user.display_name || user.email),
        h("button", { type: "button", class: "link-button", onclick: () => void signOut() }, "Sign out"),
      )
    : null;
  const main = h("main", { id: "main", tabindex: -1 }, content);
  app.replaceChildren(
    h(
      "header",
      { class: "topbar" },
      h("a", { class: "brand", href: user ? "/chat" : "/sign-in" }, "IdEinstein"),
      h("nav", { "aria-label": "Main" }, h("ul", {}, items)),
      account,
    ),
    live?.banner ?? "",
    main,
  );
}

// -- account pages -----------------------------------------------------------------------------

function signInPage(params: URLSearchParams): HTMLElement {
  const email = field("Email", "email", { type: "email", autocomplete: "email", required: true });
  const password = field("Password", "password", {
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const error = formError();
  const problem = params.get("error");
  if (problem) error.textContent = SIGN_IN_ERRORS[problem] ?? "Signing in did not work. Please try again.";
  const providers = h("div", { class: "oauth" });
  void session
    .request<{ items: OAuthProvider[] }>("GET", "/auth/oauth/providers", { auth: false })
    .then(({ items }) => {
      if (!items.length) return;
      providers.append(h("p", { class: "hint" }, "Or sign in with"));
      const next = params.get("next") ?? "/chat";
      for (const p of items) {
        const href = `${p.start_url}?next=${encodeURIComponent(next)}`;
        providers.append(h("a", { href, "data-external": "true" }, `Continue with ${p.label}`));
      }
    })
    .catch(() => undefined);
  const form = actionForm(
    { class: "stack", error, onError: () => password.input.focus() },
    async () => {
      await session.login(email.input.value, password.input.value);
      await enter(params.get("next") ?? "/chat");
    },
    error,
    email.wrap,
    password.wrap,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  return h(
    "div",
    { class: "card narrow" },
    h("h1", {}, "Sign in"),
    form,
    providers,
    h(
      "p",
      {},
      h("a", { href: "/register" }, "Create an account"),
      " · ",
      h("a", { href: "/reset-password" }, "Forgot your password?"),
    ),
  );
}

function registerPage(): HTMLElement {
  const name = field("Your name", "display_name", { autocomplete: "name" });
  const email = field("Email", "email", { type: "email", autocomplete: "email", required: true });
  const password = field("Password", "password", {
    type: "password",
    autocomplete: "new-password",
    required: true,
    minlength: 10,
    describedby: "Use at least 10 characters; a few unusual words make a strong password.",
  });
  const error = formError();
  const card = h("div", { class: "card narrow" }, h("h1", {}, "Create an account"));
  const form = actionForm(
    { class: "stack", error },
    async () => {
      await session.request("POST", "/auth/register", {
        auth: false,
        body: {
          email: email.input.value,
          password: password.input.value,
          display_name: name.input.value,
        },
      });
      const done = h(
        "div",
        { role: "status" },
        h("p", { class: "success" }, "Account created. We sent you an email with a confirmation link."),
        h("p", {}, h("a", { href: "/sign-in" }, "Sign in")),
      );
      form.replaceWith(done);
      announce("Account created");
    },
    error,
    name.wrap,
    email.wrap,
    password.wrap,
    h("button", { type: "submit", class: "primary" }, "Create account"),
  );
  card.append(form, h("p", {}, "Have an account? ", h("a", { href: "/sign-in" }, "Sign in")));
  return card;
}

function verifyPage(params: URLSearchParams): HTMLElement {
  const status = h("p", { role: "status" }, "Confirming your address…");
  const card = h("div", { class: "card narrow" }, h("h1", {}, "Confirm your email"), status);
  const token = params.get("token");
  if (!token) {
    status.textContent = "This link has no token. Open the link from the email again.";
    return card;
  }
  void session
    .request("POST", "/auth/verify-email", { auth: false, body: { token } })
    .then(() => {
      status.className = "success";
      status.textContent = "Your email address is confirmed.";
      card.append(h("p", {}, h("a", { href: session.user ? "/chat" : "/sign-in" }, "Continue")));
    })
    .catch((e: unknown) => {
      status.className = "error";
      status.textContent = errorText(e);
    });
  return card;
}

function resetPage(params: URLSearchParams): HTMLElement {
  const token = params.get("token");
  const error = formError();
  const card = h("div", { class: "card narrow" }, h("h1", {}, "Reset your password"));
  if (!token) {
    const email = field("Email", "email", { type: "email", autocomplete: "email", required: true });
    const form = actionForm(
      { class: "stack", error },
      async () => {
        await session.request("POST", "/auth/password-reset/request", {
          auth: false,
          body: { email: email.input.value },
        });
        form.replaceWith(
          h("p", { class: "success", role: "status" }, "If an account has this address, a reset link is on its way."),
        );
      },
      error,
      email.wrap,
      h("button", { type: "submit", class: "primary" }, "Send reset link"),
    );
    card.append(form);
    return card;
  }
  const password = field("New password", "password", {
    type: "password",
    autocomplete: "new-password",
    required: true,
    minlength: 10,
  });
  const form = actionForm(
    { class: "stack", error },
    async () => {
      await session.request("POST", "/auth/password-reset/confirm", {
        auth: false,
        body: { token, password: password.input.value },
      });
      form.replaceWith(
        h(
          "div",
          { role: "status" },
          h("p", { class: "success" }, "Your password is changed. Every other session has ended."),
          h("p", {}, h("a", { href: "/sign-in" }, "Sign in")),
        ),
      );
    },
    error,
    password.wrap,
    h("button", { type: "submit", class: "primary" }, "Set new password"),
  );
  card.append(form);
  return card;
}

// -- chat --------------------------------------------------------------------------------------

function chatPage(conversationId: string | null): HTMLElement {
  const state = live as Live;
  const listBox = h("ul", { class: "list" });
  const chatBox = h("div", { id: "chat-area" });
  const subject = field("Subject", "subject", { maxlength: 200, placeholder: "What can we help with?" });
  const first = field("Message", "body", { required: true, multiline: true });
  const error = formError();
  const openForm = actionForm(
    { class: "stack card", error },
    async () => {
      const opened = await session.request<{ conversation: Conversation }>("POST", "/conversations", {
        body: { subject: subject.input.value, body: first.input.value, client_msg_id: newClientMsgId() },
      });
      state.chat.upsertConversation(opened.conversation);
      navigate(`/chat/${opened.conversation.id}`);
    },
    h("h2", {}, "Start a conversation"),
    error,
    subject.wrap,
    first.wrap,
    h("button", { type: "submit", class: "primary" }, "Start chat"),
  );

  let listed = "";
  const known = (): Conversation[] =>
    [...state.chat.threads.values()]
      .map((t) => t.conversation)
      .filter((c): c is Conversation => c !== null)
      .sort((a, b) => (b.last_message_at ?? b.created_at).localeCompare(a.last_message_at ?? a.created_at));
  // A conversation opened elsewhere or a status change shows up here; re-render only then, so
  // that a focused link keeps its focus while messages arrive.
  cleanups.push(
    state.chat.onChange(() => {
      const conversations = known();
      const signature = conversations.map((c) => `${c.id}:${c.status}:${c.subject}`).join("|");
      if (listed && signature !== listed) renderList(conversations);
    }),
  );
  const renderList = (conversations: Conversation[]) => {
    listed = conversations.map((c) => `${c.id}:${c.status}:${c.subject}`).join("|");
    clear(listBox);
    for (const c of conversations) {
      const current = c.id === conversationId;
      listBox.append(
        h(
          "li",
          {},
          h("a", { href: `/chat/${c.id}`, "aria-current": current ? "page" : null }, c.subject || "Support conversation"),
          h("div", { class: "hint" }, `${c.status} · ${c.last_message_at ? formatDateTime(c.last_message_at) : "no messages"}`),
        ),
      );
    }
    if (!conversations.length) listBox.append(h("li", {}, "No conversations yet."));
  };

  const show = (id: string) => {
    const thread = state.chat.thread(id);
    currentView = new ChatView(state.chat, id, {
      heading: thread.conversation?.subject || "Support",
      nameOf: (userId) => (userId === state.chat.me.id ? "You" : userId === null ? "System" : "Support"),
    });
    chatBox.replaceChildren(currentView.element);
  };

  void session
    .request<{ items: Conversation[] }>("GET", "/conversations")
    .then(({ items }) => {
      if (!chatBox.isConnected) return; // the reader has moved on
      for (const c of items) state.chat.upsertConversation(c);
      const sorted = [...items].sort((a, b) => (b.last_message_at ?? b.created_at).localeCompare(a.last_message_at ?? a.created_at));
      renderList(sorted);
      const target = conversationId ?? sorted.find((c) => c.status !== "resolved")?.id ?? null;
      if (target && !conversationId) {
        history.replaceState(null, "", `/chat/${target}`);
        conversationId = target;
        renderList(sorted);
      }
      if (target) show(target);
      else chatBox.replaceChildren(openForm);
    })
    .catch(() => {
      // Offline on arrival: show what the page knows (the outbox still takes messages).
      if (conversationId) show(conversationId);
      else chatBox.replaceChildren(h("p", {}, "Your conversations appear once you are connected."));
    });

  return h(
    "div",
    { class: "portal-chat" },
    h(
      "section",
      { "aria-labelledby": "conversations-title" },
      h("h1", { id: "conversations-title" }, "Support"),
      listBox,
      h("p", {}, h("button", { type: "button", onclick: () => chatBox.replaceChildren(openForm) }, "New conversation")),
    ),
    chatBox,
  );
}

// -- notifications -----------------------------------------------------------------------------

function notificationsPage(): HTMLElement {
  const state = live as Live;
  const list = h("ul", { class: "list", id: "notification-list" });
  const render = () => {
    clear(list);
    const items = state.notifications.all();
    for (const n of items) {
      list.append(
        h(
          "li",
          { class: n.read ? "" : "unread", "data-id": n.id },
          h("h2", { class: "h3" }, n.title, n.read ? "" : h("span", { class: "visually-hidden" }, " (unread)")),
          h("p", {}, n.body),
          h(
            "div",
            { class: "row" },
            h("time", { datetime: n.created_at, class: "hint" }, formatDateTime(n.created_at)),
            n.link ? h("a", { href: n.link, onclick: () => void state.notifications.markRead(n.id) }, "Open") : null,
            n.read ? null : h("button", { type: "button", onclick: () => void state.notifications.markRead(n.id) }, "Mark read"),
          ),
        ),
      );
    }
    if (!items.length) list.append(h("li", {}, "Nothing here yet."));
  };
  cleanups.push(state.notifications.onChange(render));
  render();

  const pushStatus = h("p", { role: "status", class: "hint" });
  const pushButton = h("button", { type: "button" }, "Enable push notifications");
  const refreshPush = async () => {
    const now = await pushState().catch(() => "unsupported" as const);
    pushButton.disabled = now === "unsupported" || now === "denied";
    pushButton.textContent = now === "enabled" ? "Turn off push notifications" : "Enable push notifications";
    pushButton.dataset.state = now;
    pushStatus.textContent =
      now === "unsupported"
        ? "This browser cannot receive push notifications here."
        : now === "denied"
          ? "Notifications are blocked in this browser's settings."
          : now === "enabled"
            ? "Push notifications are on for this browser."
            : "Get a notification even when this page is closed.";
  };
  pushButton.addEventListener("click", async () => {
    pushButton.disabled = true;
    try {
      if (pushButton.dataset.state === "enabled") await disablePush(session);
      else await enablePush(session);
    } catch (e) {
      pushStatus.textContent = e instanceof ApiError ? e.message : `Could not change push: ${errorText(e)}`;
      pushButton.disabled = false;
      return;
    }
    await refreshPush();
  });
  void refreshPush();

  return h(
    "div",
    {},
    h(
      "div",
      { class: "row" },
      h("h1", {}, "Notifications"),
      h("button", { type: "button", onclick: () => void state.notifications.markAllRead() }, "Mark all read"),
    ),
    h("section", { class: "card", "aria-label": "Push notifications" }, pushButton, pushStatus),
    list,
  );
}

// -- routing -----------------------------------------------------------------------------------

async function enter(next: string): Promise<void> {
  if (session.user && !live) live = startLive(session.user);
  navigate(next.startsWith("/") && !next.startsWith("//") ? next : "/chat");
}

function route(): void {
  leavePage();
  const { pathname, search } = window.location;
  const params = new URLSearchParams(search);
  const signedIn = session.user !== null && live !== null;
  if (pathname === "/verify-email") return shell(pathname, verifyPage(params));
  if (pathname === "/reset-password") return shell(pathname, resetPage(params));
  if (pathname === "/register") return shell(pathname, signedIn ? chatPage(null) : registerPage());
  if (!signedIn) {
    if (pathname !== "/sign-in" && pathname !== "/") params.set("next", pathname);
    return shell("/sign-in", signInPage(params));
  }
  if (pathname === "/notifications") return shell(pathname, notificationsPage());
  const context: PageContext = {
    session,
    socket: (live as Live).socket,
    onLeave: (cleanup) => cleanups.push(cleanup),
  };
  if (pathname === "/files") return shell(pathname, filesPage(context, params));
  const file = /^\/files\/([0-9a-f-]{36})$/.exec(pathname);
  if (file?.[1]) return shell(pathname, filePage(context, file[1]));
  if (pathname === "/shop") return shell(pathname, shopPage(context));
  if (pathname === "/orders") return shell(pathname, ordersPage(context, null));
  const order = /^\/orders\/([0-9a-f-]{36})$/.exec(pathname);
  if (order?.[1]) return shell(pathname, ordersPage(context, order[1]));
  const match = /^\/chat\/([0-9a-f-]{36})$/.exec(pathname);
  if (match?.[1]) return shell(pathname, chatPage(match[1]));
  if (pathname !== "/chat") history.replaceState(null, "", "/chat");
  return shell("/chat", chatPage(null));
}

window.addEventListener("popstate", route);
window.addEventListener("ie:navigate", route);
document.addEventListener("click", onLinkClick);

async function boot(): Promise<void> {
  try {
    const user = await session.resume();
    if (user) live = startLive(user);
  } catch (e) {
    if (!(e instanceof Error)) throw e;
  }
  route();
}

void boot();
