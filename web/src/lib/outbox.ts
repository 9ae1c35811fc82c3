// Messages typed but not yet acknowledged by the hub, kept in localStorage so that neither a
// dropped connection nor a reload loses them. Each has its client_msg_id from the moment it is
// typed: resending after an unclear failure cannot double it (the hub is idempotent on it).

export interface Pending {
  client_msg_id: string;
  conversation_id: string;
  body: string;
  queued_at: string;
  failed?: string; // the hub refused it (e.g. too long): shown, not retried
}

export function newClientMsgId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Outbox {
  private items: Pending[];

  constructor(private readonly key: string) {
    this.items = Outbox.load(key);
  }

  private static load(key: string): Pending[] {
    try {
      const raw = localStorage.getItem(key);
      const parsed: unknown = raw ? JSON.parse(raw) : [];
      return Array.isArray(parsed) ? (parsed as Pending[]) : [];
    } catch {
      return [];
    }
  }

  private save(): void {
    try {
      localStorage.setItem(this.key, JSON.stringify(this.items));
    } catch {
      // storage full or denied: the outbox still works for this page's life
    }
  }

  all(): readonly Pending[] {
    return this.items;
  }

  for(conversationId: string): Pending[] {
    return this.items.filter((p) => p.conversation_id === conversationId);
  }

  add(conversationId: string, body: string): Pending {
    const item: Pending = {
      client_msg_id: newClientMsgId(),
      conversation_id: conversationId,
      body,
      queued_at: new Date().toISOString(),
    };
    this.items.push(item);
    this.save();
    return item;
  }

  remove(clientMsgId: string): boolean {
    const before = this.items.length;
    this.items = this.items.filter((p) => p.client_msg_id !== clientMsgId);
    if (this.items.length !== before) this.save();
    return this.items.length !== before;
  }

  fail(clientMsgId: string, reason: string): void {
    const item = this.items.find((p) => p.client_msg_id === clientMsgId);
    if (item) {
      item.failed = reason;
      this.save();
    }
  }

  retry(clientMsgId: string): void {
    const item = this.items.find((p) => p.client_msg_id === clientMsgId);
    if (item) {
      delete item.failed;
      this.save();
    }
  }
}
