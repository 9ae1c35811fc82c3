// Conversations as the page knows them: messages deduplicated on their id and ordered by seq,
// the last contiguous seq per conversation (what `sync` asks after), typing and read receipts,
// and the outbox flushed after every (re)connect. Shared by the portal and the dashboard.

import type { Session } from "./api";
import { Outbox, type Pending } from "./outbox";
import type { HubSocket } from "./socket";
import type { AppNotification, Conversation, Message, User } from "./types";

export const HISTORY_PAGE = 30;
const TYPING_SHOWN_MS = 6_000;
const TRANSIENT_CODES = new Set(["rate_limited", "internal_error"]);

export interface Thread {
  id: string;
  conversation: Conversation | null;
  messages: Map<string, Message>; // by id
  seqs: Set<number>;
  lastSeq: number; // every seq up to this one that the page should have, it has
  hasMoreBefore: boolean;
  loaded: boolean;
  readBy: Map<string, number>; // user id -> highest seq they have read
  typing: Map<string, number>; // user id -> until (ms since epoch)
  readSent: number;
}

interface SyncReply {
  conversations: Record<string, { messages?: Message[]; has_more?: boolean; error?: string }>;
  notifications: AppNotification[];
  notifications_has_more: boolean;
}

type Listener = (conversationId: string | null) => void;

export class ChatStore {
  readonly threads = new Map<string, Thread>();
  readonly outbox: Outbox;
  private listeners = new Set<Listener>();
  private flushing = false;
  private wanted = new Set<string>(); // conversations on screen: loaded once connected
  private typingTimer: number | undefined;
  /** Given the notifications that `sync` replayed. */
  onReplayedNotifications: (items: AppNotification[]) => void = () => undefined;
  notificationsAfter: () => string | null = () => null;

  constructor(
    readonly socket: HubSocket,
    readonly session: Session,
    readonly me: User,
  ) {
    this.outbox = new Outbox(`ie-outbox:${me.id}`);
    socket.on<Message>("chat:message", (m) => this.add(m));
    socket.on<{ conversation_id: string; user_id: string; typing: boolean }>(
      "chat:typing",
      (e) => this.onTyping(e.conversation_id, e.user_id, e.typing),
    );
    socket.on<{ conversation_id: string; user_id: string; seq: number }>("chat:read", (e) => {
      const thread = this.threads.get(e.conversation_id);
      if (!thread) return;
      thread.readBy.set(e.user_id, Math.max(thread.readBy.get(e.user_id) ?? 0, e.seq));
      this.changed(e.conversation_id);
    });
    socket.on<Conversation>("chat:conversation", (c) => this.upsertConversation(c));
    socket.afterConnect(async () => {
      await this.sync();
      await this.loadWanted();
      void this.flush();
    });
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(conversationId: string | null): void {
    for (const listener of this.listeners) listener(conversationId);
  }

  thread(id: string): Thread {
    let thread = this.threads.get(id);
    if (!thread) {
      thread = {
        id,
        conversation: null,
        messages: new Map(),
        seqs: new Set(),
        lastSeq: 0,
        hasMoreBefore: false,
        loaded: false,
        readBy: new Map(),
        typing: new Map(),
        readSent: 0,
      };
      this.threads.set(id, thread);
    }
    return thread;
  }

  /** A conversation from REST or a `chat:conversation` push. A conversation the page has not
   * loaded starts its sync position at its last seq: opening it loads the latest page. */
  upsertConversation(conversation: Conversation): void {
    const thread = this.thread(conversation.id);
    if (!thread.loaded && thread.messages.size === 0) {
      thread.lastSeq = Math.max(thread.lastSeq, conversation.last_seq);
    }
    thread.conversation = conversation;
    this.changed(conversation.id);
  }

  /** Store a message once, whichever road it came by (ack, push, sync, history). */
  add(message: Message): boolean {
    const thread = this.thread(message.conversation_id);
    if (message.client_msg_id && message.sender_id === this.me.id) {
      this.outbox.remove(message.client_msg_id);
    }
    thread.typing.delete(message.sender_id ?? "");
    if (thread.messages.has(message.id)) {
      this.changed(thread.id);
      return false;
    }
    thread.messages.set(message.id, message);
    thread.seqs.add(message.seq);
    while (thread.seqs.has(thread.lastSeq + 1)) thread.lastSeq += 1;
    if (thread.conversation && message.seq > thread.conversation.last_seq) {
      thread.conversation = {
        ...thread.conversation,
        last_seq: message.seq,
        last_message_at: message.created_at,
      };
    }
    this.changed(thread.id);
    return true;
  }

  ordered(conversationId: string): Message[] {
    const thread = this.threads.get(conversationId);
    if (!thread) return [];
    return [...thread.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  pending(conversationId: string): Pending[] {
    return this.outbox.for(conversationId);
  }

  // -- sync ----------------------------------------------------------------------------------

  syncPayload(): { conversations: Record<string, number>; notifications_after?: string } {
    const conversations: Record<string, number> = {};
    for (const thread of this.threads.values()) conversations[thread.id] = thread.lastSeq;
    const after = this.notificationsAfter();
    return after ? { conversations, notifications_after: after } : { conversations };
  }

  /** Ask for everything missed since the last contiguous seq of each conversation, page by
   * page, and the notifications after the newest one the page has. */
  async sync(): Promise<void> {
    for (let round = 0; round < 50; round += 1) {
      const reply = await this.socket.call<SyncReply>("sync", this.syncPayload());
      let more = reply.notifications_has_more;
      for (const [id, part] of Object.entries(reply.conversations)) {
        for (const message of part.messages ?? []) this.add(message);
        if (part.has_more) more = true;
        if (part.error) this.threads.delete(id);
      }
      if (reply.notifications.length) this.onReplayedNotifications(reply.notifications);
      if (!more) return;
    }
  }

  // -- history -------------------------------------------------------------------------------

  /** The latest page of a conversation, the first time it is shown (or, when the page is
   * not connected yet, right after it connects). */
  async open(conversationId: string): Promise<void> {
    const thread = this.thread(conversationId);
    this.wanted.add(conversationId);
    if (thread.loaded || !this.socket.socket.connected) return;
    await this.loadEarlier(conversationId);
  }

  private async loadWanted(): Promise<void> {
    for (const id of this.wanted) {
      if (!this.thread(id).loaded) await this.loadEarlier(id);
    }
  }

  /** One page further back (scroll-back); returns how many messages arrived. */
  async loadEarlier(conversationId: string): Promise<number> {
    const thread = this.thread(conversationId);
    const oldest = thread.seqs.size ? Math.min(...thread.seqs) : null;
    const payload: Record<string, unknown> = {
      conversation_id: conversationId,
      limit: HISTORY_PAGE,
    };
    if (thread.loaded && oldest !== null) payload.before_seq = oldest;
    const reply = await this.socket.call<{ messages: Message[]; has_more: boolean }>(
      "chat:history",
      payload,
    );
    if (!thread.loaded && reply.messages.length) {
      // The first page is the newest: the page's window starts at its oldest message, and
      // `sync` continues after its newest.
      const oldestSeq = Math.min(...reply.messages.map((m) => m.seq));
      thread.lastSeq = Math.max(thread.lastSeq, oldestSeq - 1);
    }
    thread.loaded = true;
    thread.hasMoreBefore = reply.has_more;
    let added = 0;
    for (const message of reply.messages) if (this.add(message)) added += 1;
    this.changed(conversationId);
    return added;
  }

  // -- sending -------------------------------------------------------------------------------

  send(conversationId: string, body: string): Pending {
    const item = this.outbox.add(conversationId, body);
    this.stopTyping(conversationId);
    this.changed(conversationId);
    void this.flush();
    return item;
  }

  retry(clientMsgId: string): void {
    this.outbox.retry(clientMsgId);
    void this.flush();
  }

  /** Send what waits in the outbox, in order, while connected. An error ack for a message
   * that can never pass marks it failed; anything else leaves it for the next connect. */
  async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (;;) {
        const next = this.outbox.all().find((p) => !p.failed);
        if (!next || !this.socket.socket.connected) return;
        let ack;
        try {
          ack = await this.socket.request<{ message: Message; duplicate: boolean }>(
            "chat:send",
            {
              conversation_id: next.conversation_id,
              client_msg_id: next.client_msg_id,
              body: next.body,
            },
          );
        } catch {
          return; // timed out or disconnected: resent (same client_msg_id) after reconnecting
        }
        if (ack.ok) {
          this.outbox.remove(next.client_msg_id);
          this.add(ack.message);
        } else if (TRANSIENT_CODES.has(ack.error.code)) {
          return;
        } else {
          this.outbox.fail(next.client_msg_id, ack.error.message);
          this.changed(next.conversation_id);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  // -- typing and read receipts --------------------------------------------------------------

  private onTyping(conversationId: string, userId: string, typing: boolean): void {
    if (userId === this.me.id) return;
    const thread = this.thread(conversationId);
    if (typing) {
      thread.typing.set(userId, Date.now() + TYPING_SHOWN_MS);
      window.setTimeout(() => this.changed(conversationId), TYPING_SHOWN_MS + 50);
    } else {
      thread.typing.delete(userId);
    }
    this.changed(conversationId);
  }

  typingUsers(conversationId: string): string[] {
    const thread = this.threads.get(conversationId);
    if (!thread) return [];
    const now = Date.now();
    return [...thread.typing.entries()].filter(([, until]) => until > now).map(([id]) => id);
  }

  /** Call on input: "typing" now (the hub throttles), "stopped" after a pause. */
  typed(conversationId: string): void {
    if (!this.socket.socket.connected) return;
    void this.socket.request("chat:typing", { conversation_id: conversationId, typing: true });
    window.clearTimeout(this.typingTimer);
    this.typingTimer = window.setTimeout(() => this.stopTyping(conversationId), 3_000);
  }

  stopTyping(conversationId: string): void {
    window.clearTimeout(this.typingTimer);
    if (!this.socket.socket.connected) return;
    void this.socket
      .request("chat:typing", { conversation_id: conversationId, typing: false })
      .catch(() => undefined);
  }

  /** Tell the others how far this user has read (when the conversation is on screen). */
  markRead(conversationId: string): void {
    const thread = this.threads.get(conversationId);
    if (!thread || !this.socket.socket.connected) return;
    const fromOthers = [...thread.messages.values()].filter((m) => m.sender_id !== this.me.id);
    const top = Math.max(0, ...fromOthers.map((m) => m.seq));
    if (top <= thread.readSent) return;
    thread.readSent = top;
    void this.socket
      .request("chat:read", { conversation_id: conversationId, seq: top })
      .catch(() => {
        thread.readSent = 0;
      });
  }

  /** The highest seq someone other than me has read. */
  readByOthers(conversationId: string): number {
    const thread = this.threads.get(conversationId);
    if (!thread) return 0;
    let top = 0;
    for (const [user, seq] of thread.readBy) if (user !== this.me.id) top = Math.max(top, seq);
    return top;
  }
}
