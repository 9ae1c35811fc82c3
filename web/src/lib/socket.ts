// The Socket.IO connection, with our own reconnection: exponential backoff with jitter, a
// fresh access token at every attempt, and hooks that run after each (re)connect (the chat
// store's `sync`, then its outbox). While the browser says it is offline nothing is tried;
// the `online` event reconnects at once.

import { io, type Socket } from "socket.io-client";
import type { Session } from "./api";
import type { Ack } from "./types";

export type ConnectionState = "connecting" | "online" | "offline" | "signed-out";

export interface Backoff {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 500, maxMs: 30_000 };

/** Delay before attempt `attempt` (0-based): exponential, capped, with "equal jitter" (half
 * fixed, half random) so that clients cut off together do not come back together. */
export function backoffDelay(attempt: number, backoff: Backoff, random = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.baseMs * 2 ** Math.min(attempt, 20));
  return ceiling / 2 + random() * (ceiling / 2);
}

type StateListener = (state: ConnectionState) => void;
type ConnectedHook = (socket: HubSocket) => Promise<void>;

export class HubSocket {
  readonly socket: Socket;
  state: ConnectionState = "connecting";
  private attempt = 0;
  private timer: number | undefined;
  private stopped = true;
  private everConnected = false;
  private stateListeners = new Set<StateListener>();
  private hooks: ConnectedHook[] = [];

  constructor(
    private readonly session: Session,
    private readonly backoff: Backoff = DEFAULT_BACKOFF,
  ) {
    this.socket = io({
      autoConnect: false,
      reconnection: false,
      transports: ["websocket", "polling"],
      tryAllTransports: true,
    });
    this.socket.on("connect", () => void this.onConnect());
    this.socket.on("connect_error", (error: Error & { data?: { code?: string } }) =>
      this.onConnectError(error.data?.code),
    );
    this.socket.on("disconnect", (reason) => {
      if (reason === "io client disconnect") return; // we closed it ourselves
      this.setState("connecting");
      this.schedule();
    });
    window.addEventListener("offline", this.goOffline);
    window.addEventListener("online", this.goOnline);
  }

  onState(listener: StateListener): () => void {
    this.stateListeners.add(listener);
    listener(this.state);
    return () => this.stateListeners.delete(listener);
  }

  /** Work to do after every successful (re)connect, in the order added. */
  afterConnect(hook: ConnectedHook): void {
    this.hooks.push(hook);
  }

  on<T>(event: string, handler: (data: T) => void): void {
    this.socket.on(event, handler as (...args: unknown[]) => void);
  }

  get connected(): boolean {
    return this.socket.connected && this.state === "online";
  }

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    window.removeEventListener("offline", this.goOffline);
    window.removeEventListener("online", this.goOnline);
    this.socket.disconnect();
  }

  /** Emit with an ack; a timeout or a dropped connection rejects. */
  async request<T>(event: string, payload: unknown, timeoutMs = 10_000): Promise<Ack<T>> {
    if (!this.socket.connected) throw new Error("not connected");
    return (await this.socket.timeout(timeoutMs).emitWithAck(event, payload)) as Ack<T>;
  }

  /** Like `request`, but an error ack throws. */
  async call<T>(event: string, payload: unknown, timeoutMs = 10_000): Promise<T> {
    const ack = await this.request<T>(event, payload, timeoutMs);
    if (!ack.ok) throw new AckFailed(ack.error.code, ack.error.message);
    return ack;
  }

  private setState(state: ConnectionState): void {
    if (this.state === state) return;
    this.state = state;
    for (const listener of this.stateListeners) listener(state);
  }

  private async connect(): Promise<void> {
    window.clearTimeout(this.timer);
    if (this.stopped || this.socket.connected) return;
    if (!navigator.onLine) {
      this.setState("offline");
      return; // the `online` event brings us back
    }
    this.setState("connecting");
    let token: string | null;
    try {
      token = await this.session.token();
    } catch {
      this.schedule(); // the service is unreachable: try again later
      return;
    }
    if (token === null) {
      this.setState("signed-out");
      return;
    }
    if (this.stopped || this.socket.connected || !navigator.onLine) return;
    this.socket.auth = { token, reconnect: this.everConnected };
    this.socket.connect();
  }

  private schedule(): void {
    if (this.stopped) return;
    window.clearTimeout(this.timer);
    if (!navigator.onLine) {
      this.setState("offline");
      return;
    }
    const delay = backoffDelay(this.attempt, this.backoff);
    this.attempt += 1;
    this.timer = window.setTimeout(() => void this.connect(), delay);
  }

  private onConnectError(code: string | undefined): void {
    if (code === "token_expired" || code === "unauthorized") {
      this.session.expire(); // the next attempt refreshes; a dead session ends as signed-out
    }
    this.socket.disconnect();
    this.setState("connecting");
    this.schedule();
  }

  private async onConnect(): Promise<void> {
    this.attempt = 0;
    this.everConnected = true;
    try {
      for (const hook of this.hooks) await hook(this);
    } catch {
      // The connection dropped during the hooks: the next connect runs them again.
      if (!this.socket.connected) return;
    }
    if (this.socket.connected) this.setState("online");
  }

  private readonly goOffline = (): void => {
    window.clearTimeout(this.timer);
    this.socket.disconnect();
    this.setState("offline");
  };

  private readonly goOnline = (): void => {
    this.attempt = 0;
    void this.connect();
  };
}

export class AckFailed extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "AckFailed";
  }
}
