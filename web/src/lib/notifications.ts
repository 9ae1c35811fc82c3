// The notification centre's data: the inbox from REST, new ones live (`notification`) or
// replayed by `sync`, deduplicated on id; read state goes back over REST.

import type { Session } from "./api";
import type { ChatStore } from "./chat";
import type { HubSocket } from "./socket";
import type { AppNotification } from "./types";

interface Page {
  items: AppNotification[];
  has_more: boolean;
  next_after: string | null;
}

export class NotificationStore {
  private byId = new Map<string, AppNotification>();
  private listeners = new Set<() => void>();

  constructor(
    private readonly session: Session,
    private readonly socket: HubSocket,
  ) {
    socket.on<AppNotification>("notification", (n) => this.receive([n]));
  }

  /** Let `sync` ask for what came after the newest one we have. */
  attach(chat: ChatStore): void {
    chat.notificationsAfter = () => this.newestId();
    chat.onReplayedNotifications = (items) => this.receive(items);
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  async load(): Promise<void> {
    let after: string | null = null;
    for (let page = 0; page < 10; page += 1) {
      const result: Page = await this.session.request<Page>("GET", "/notifications", {
        query: { after, limit: 100 },
      });
      for (const item of result.items) this.byId.set(item.id, item);
      if (!result.has_more || !result.next_after) break;
      after = result.next_after;
    }
    this.changed();
  }

  private receive(items: AppNotification[]): void {
    for (const item of items) this.byId.set(item.id, item);
    if (this.socket.socket.connected && items.length) {
      void this.socket
        .request("notifications:ack", { ids: items.map((n) => n.id) })
        .catch(() => undefined);
    }
    this.changed();
  }

  newestId(): string | null {
    let newest: string | null = null;
    for (const id of this.byId.keys()) if (newest === null || id > newest) newest = id;
    return newest;
  }

  /** Newest first. */
  all(): AppNotification[] {
    return [...this.byId.values()].sort((a, b) => (a.id < b.id ? 1 : -1));
  }

  unread(): number {
    let count = 0;
    for (const n of this.byId.values()) if (!n.read) count += 1;
    return count;
  }

  async markRead(id: string): Promise<void> {
    const item = this.byId.get(id);
    if (!item || item.read) return;
    await this.session.request("POST", `/notifications/${id}/read`);
    this.byId.set(id, { ...item, read: true });
    this.changed();
  }

  async markAllRead(): Promise<void> {
    await this.session.request("POST", "/notifications/read-all");
    for (const [id, item] of this.byId) this.byId.set(id, { ...item, read: true });
    this.changed();
  }
}
