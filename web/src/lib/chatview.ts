// One conversation on screen: history with scroll-back, the live log, typing indicator, read
// receipts, and the composer (messages go to the outbox first, so nothing typed is lost).

import type { ChatStore } from "./chat";
import { announce, errorText, formatTime, h } from "./dom";
import type { Pending } from "./outbox";
import type { Message } from "./types";

export interface ChatViewOptions {
  /** Who a sender is, as the reader should see it ("You", "Support", a name). */
  nameOf: (userId: string | null) => string;
  /** Heading level and text above the log. */
  heading: string;
  headingLevel?: 2 | 3;
  /** Extra controls for the header (dashboard: assign, close). */
  actions?: HTMLElement[];
  /** Text to insert into the composer, e.g. from canned replies. */
  composerExtras?: (insert: (text: string) => void) => HTMLElement | null;
}

interface Row {
  key: string;
  signature: string; // what, when it changes, needs the element's attributes and meta redone
  attrs: Record<string, string>;
  sender: string;
  body: string;
  meta: () => (Node | string)[];
}

let viewCounter = 0;
const UUID_RE = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;

export class ChatView {
  readonly element: HTMLElement;
  private readonly log: HTMLOListElement;
  private readonly scroller: HTMLElement;
  private readonly earlier: HTMLButtonElement;
  private readonly typingLine: HTMLElement;
  private readonly input: HTMLTextAreaElement;
  private readonly unsubscribe: () => void;
  private loadingEarlier = false;
  private readonly rows = new Map<string, HTMLLIElement>();
  private readonly signatures = new Map<string, string>();

  constructor(
    private readonly store: ChatStore,
    readonly conversationId: string,
    private readonly options: ChatViewOptions,
  ) {
    viewCounter += 1;
    const ids = `chat-${viewCounter}`;
    const headingTag = options.headingLevel === 3 ? "h3" : "h2";
    this.earlier = h(
      "button",
      { type: "button", class: "link-button", onclick: () => void this.loadEarlier() },
      "Load earlier messages",
    );
    this.log = h("ol", { class: "message-list" });
    this.scroller = h(
      "div",
      {
        class: "messages",
        role: "log",
        "aria-live": "polite",
        "aria-labelledby": `${ids}-title`,
        tabindex: 0,
      },
      this.log,
    );
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < 24) void this.loadEarlier();
    });
    this.typingLine = h("p", { class: "typing", "aria-live": "polite" });
    this.input = h("textarea", {
      id: `${ids}-input`,
      name: "body",
      rows: 2,
      required: true,
      maxlength: 10000,
      autocomplete: "off",
    });
    this.input.addEventListener("input", () => {
      if (this.input.value.trim()) store.typed(conversationId);
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    const form = h(
      "form",
      { class: "composer", onsubmit: (e: Event) => (e.preventDefault(), this.submit()) },
      h("label", { for: `${ids}-input` }, "Message"),
      this.input,
      h("div", { class: "composer-row" }, options.composerExtras?.((t) => this.insert(t)) ?? null,
        h("button", { type: "submit", class: "primary" }, "Send")),
    );
    this.element = h(
      "section",
      { class: "chat", "aria-labelledby": `${ids}-title`, "data-conversation-id": conversationId },
      h(
        "header",
        { class: "chat-header" },
        h(headingTag, { id: `${ids}-title` }, options.heading),
        ...(options.actions ?? []),
      ),
      this.earlier,
      this.scroller,
      this.typingLine,
      form,
    );
    this.unsubscribe = store.onChange((id) => {
      if (id === null || id === conversationId) this.render();
    });
    this.render();
    void store.open(conversationId).then(
      () => this.scrollToEnd(),
      () => undefined, // offline: the log fills once connected (sync)
    );
    window.addEventListener("focus", this.onFocus);
  }

  destroy(): void {
    this.unsubscribe();
    window.removeEventListener("focus", this.onFocus);
    this.element.remove();
  }

  focus(): void {
    this.input.focus();
  }

  private readonly onFocus = (): void => this.store.markRead(this.conversationId);

  private insert(text: string): void {
    this.input.value = this.input.value ? `${this.input.value}\n${text}` : text;
    this.input.focus();
  }

  private submit(): void {
    const body = this.input.value.trim();
    if (!body) return;
    this.store.send(this.conversationId, body);
    this.input.value = "";
    this.scrollToEnd();
  }

  private async loadEarlier(): Promise<void> {
    const thread = this.store.threads.get(this.conversationId);
    if (!thread?.hasMoreBefore || this.loadingEarlier) return;
    this.loadingEarlier = true;
    const box = this.scroller;
    const before = box.scrollHeight - box.scrollTop;
    try {
      const added = await this.store.loadEarlier(this.conversationId);
      box.scrollTop = box.scrollHeight - before; // keep the reader's place
      announce(`${added} earlier messages loaded`);
    } catch (error) {
      announce(`Could not load earlier messages: ${errorText(error)}`);
    } finally {
      this.loadingEarlier = false;
    }
  }

  private scrollToEnd(): void {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** Bring the log up to date in place: each message keeps its element (keyed by its
   * client_msg_id when it has one, so a queued message becomes the stored one without being
   * re-added), and only what changed (state, receipt) is touched. The log is a live region:
   * re-adding everything would have screen readers read the whole conversation again. */
  private render(): void {
    const store = this.store;
    const thread = store.threads.get(this.conversationId);
    const box = this.scroller;
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const me = store.me.id;
    const readUpTo = store.readByOthers(this.conversationId);
    this.earlier.hidden = !thread?.hasMoreBefore;

    const wanted: Row[] = store
      .ordered(this.conversationId)
      .map((message) => this.messageRow(message, me, readUpTo));
    for (const pending of store.pending(this.conversationId)) wanted.push(this.pendingRow(pending));
    if (!wanted.length) {
      wanted.push({
        key: "empty",
        signature: "",
        attrs: { class: "empty" },
        sender: "",
        body: "No messages yet.",
        meta: () => [],
      });
    }

    const keep = new Set(wanted.map((row) => row.key));
    for (const [key, node] of this.rows) {
      if (!keep.has(key)) {
        node.remove();
        this.rows.delete(key);
        this.signatures.delete(key);
      }
    }
    let cursor: ChildNode | null = this.log.firstChild;
    for (const row of wanted) {
      let node = this.rows.get(row.key);
      if (!node) {
        node = h("li", {});
        if (row.sender) node.append(h("span", { class: "sender" }, row.sender));
        node.append(h(row.key === "empty" ? "span" : "p", { class: "body" }, row.body));
        if (row.key !== "empty") node.append(h("span", { class: "meta" }));
        this.rows.set(row.key, node);
      }
      if (this.signatures.get(row.key) !== row.signature) {
        for (const [name, value] of Object.entries(row.attrs)) node.setAttribute(name, value);
        node.querySelector(".meta")?.replaceChildren(...row.meta());
        this.signatures.set(row.key, row.signature);
      }
      if (node === cursor) cursor = cursor.nextSibling;
      else this.log.insertBefore(node, cursor);
    }

    const typing = store.typingUsers(this.conversationId);
    this.typingLine.textContent = typing.length
      ? `${typing.map((id) => this.options.nameOf(id)).join(", ")} ${typing.length > 1 ? "are" : "is"} typing…`
      : "";
    if (atEnd) this.scrollToEnd();
    if (document.hasFocus() && !document.hidden) store.markRead(this.conversationId);
  }

  private messageRow(message: Message, me: string, readUpTo: number): Row {
    const mine = message.sender_id === me;
    const status = mine ? (message.seq <= readUpTo ? "Read" : "Sent") : "";
    const system = message.kind === "system";
    return {
      key: mine && message.client_msg_id ? `c:${message.client_msg_id}` : `m:${message.id}`,
      signature: `${message.id}:${status}`,
      attrs: {
        class: `message${mine ? " mine" : ""}${system ? " system" : ""}`,
        "data-seq": String(message.seq),
        "data-id": message.id,
        "data-client-msg-id": message.client_msg_id ?? "",
        "data-state": mine ? status.toLowerCase() : "received",
      },
      sender: this.options.nameOf(message.sender_id),
      body: system ? this.humanize(message.body) : message.body,
      meta: () => [
        h("time", { datetime: message.created_at }, formatTime(message.created_at)),
        status ? ` · ${status}` : "",
      ],
    };
  }

  private pendingRow(pending: Pending): Row {
    const failed = pending.failed;
    return {
      key: `c:${pending.client_msg_id}`,
      signature: failed ? `failed:${failed}` : "queued",
      attrs: {
        class: "message mine pending",
        "data-client-msg-id": pending.client_msg_id,
        "data-state": failed ? "failed" : "queued",
      },
      sender: "You",
      body: pending.body,
      meta: () =>
        failed
          ? [
              `Not sent: ${failed} `,
              h(
                "button",
                {
                  type: "button",
                  class: "link-button",
                  onclick: () => this.store.retry(pending.client_msg_id),
                },
                "Retry",
              ),
            ]
          : ["Waiting to send"],
    };
  }

  /** System messages name people by id ("assigned to <uuid>"): say who, as the reader knows them. */
  private humanize(body: string): string {
    return body.replace(UUID_RE, (id) => this.options.nameOf(id));
  }
}
