// The REST client: JSON over fetch with the access token; a 401 refreshes the session once and
// retries. The refresh token lives in an HttpOnly cookie (path /api/v1/auth/); the page echoes
// the readable `ie_csrf` cookie in X-CSRF-Token (double submit). The short-lived access token is
// kept in memory and in this tab's sessionStorage, so that a reload does not spend a refresh
// (each one rotates the cookie, and the refresh route is rate-limited per address).

import type { TokenPair, User } from "./types";

const API = "/api/v1";
const CSRF_COOKIE = "ie_csrf";
const REFRESH_LOCK = "ie-refresh";
const EXPIRY_MARGIN_MS = 30_000;
const TOKEN_KEY = "ie-access";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export class NetworkError extends Error {
  constructor(message = "The service cannot be reached") {
    super(message);
    this.name = "NetworkError";
  }
}

interface RequestOptions {
  body?: unknown;
  auth?: boolean;
  query?: Record<string, string | number | boolean | null | undefined>;
}

function readCookie(name: string): string {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

async function readError(response: Response): Promise<ApiError> {
  let code = "http_error";
  let message = response.statusText || `HTTP ${response.status}`;
  let details: Record<string, unknown> = {};
  try {
    const body = (await response.json()) as {
      error?: { code?: string; message?: string; details?: Record<string, unknown> };
    };
    if (body.error) {
      code = body.error.code ?? code;
      message = body.error.message ?? message;
      details = body.error.details ?? {};
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, code, message, details);
}

/** Run `work` while holding a lock shared by every tab of this origin (when the browser has
 * the Web Locks API): two tabs refreshing with the same cookie at once would present a spent
 * refresh token, and reuse revokes the whole session. */
async function withRefreshLock<T>(work: () => Promise<T>): Promise<T> {
  if (typeof navigator !== "undefined" && "locks" in navigator) {
    return navigator.locks.request(REFRESH_LOCK, work);
  }
  return work();
}

type SessionListener = (user: User | null) => void;

export class Session {
  private accessToken: string | null = null;
  private expiresAt = 0;
  private refreshing: Promise<string | null> | null = null;
  private listeners = new Set<SessionListener>();
  user: User | null = null;

  onChange(listener: SessionListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private setUser(user: User | null): void {
    this.user = user;
    for (const listener of this.listeners) listener(user);
  }

  private keep(pair: TokenPair): string {
    this.accessToken = pair.access_token;
    this.expiresAt = Date.now() + pair.expires_in * 1000;
    try {
      sessionStorage.setItem(TOKEN_KEY, JSON.stringify([this.accessToken, this.expiresAt]));
    } catch {
      // storage denied: memory only
    }
    return pair.access_token;
  }

  private forget(): void {
    this.accessToken = null;
    this.expiresAt = 0;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // nothing kept
    }
  }

  /** After a page load: resume this tab's token or the cookie session, if there is one. */
  async resume(): Promise<User | null> {
    if (!readCookie(CSRF_COOKIE)) {
      this.forget(); // signed out (in another tab, say)
      return null;
    }
    try {
      const kept: unknown = JSON.parse(sessionStorage.getItem(TOKEN_KEY) ?? "null");
      if (Array.isArray(kept) && typeof kept[0] === "string" && typeof kept[1] === "number") {
        [this.accessToken, this.expiresAt] = kept as [string, number];
      }
    } catch {
      this.forget();
    }
    if ((await this.token()) === null) return null;
    const user = await this.request<User>("GET", "/me");
    this.setUser(user);
    return user;
  }

  async login(email: string, password: string): Promise<User> {
    const pair = await this.request<TokenPair>("POST", "/auth/login", {
      body: { email, password, use_cookie: true },
      auth: false,
    });
    this.keep(pair);
    const user = await this.request<User>("GET", "/me");
    this.setUser(user);
    return user;
  }

  async logout(): Promise<void> {
    try {
      await fetch(`${API}/auth/logout`, {
        method: "POST",
        headers: { "X-CSRF-Token": readCookie(CSRF_COOKIE) },
        credentials: "same-origin",
      });
    } finally {
      this.forget();
      this.setUser(null);
    }
  }

  /** A valid access token, refreshed when it is about to expire; null when signed out. */
  async token(): Promise<string | null> {
    if (this.accessToken && Date.now() < this.expiresAt - EXPIRY_MARGIN_MS) {
      return this.accessToken;
    }
    return this.refresh();
  }

  /** Forget the access token (the server said it expired): the next `token()` refreshes. */
  expire(): void {
    this.expiresAt = 0;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // nothing kept
    }
  }

  refresh(): Promise<string | null> {
    this.refreshing ??= withRefreshLock(() => this.refreshNow()).finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async refreshNow(): Promise<string | null> {
    let response: Response;
    try {
      response = await fetch(`${API}/auth/refresh`, {
        method: "POST",
        headers: { "X-CSRF-Token": readCookie(CSRF_COOKIE) },
        credentials: "same-origin",
      });
    } catch {
      throw new NetworkError();
    }
    if (response.status === 401 || response.status === 403) {
      this.forget();
      if (this.user !== null) this.setUser(null);
      return null;
    }
    if (!response.ok) throw await readError(response);
    return this.keep((await response.json()) as TokenPair);
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const auth = options.auth ?? true;
    let url = `${API}${path}`;
    if (options.query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(options.query)) {
        if (value !== null && value !== undefined) params.set(key, String(value));
      }
      const text = params.toString();
      if (text) url += `?${text}`;
    }
    const send = async (token: string | null): Promise<Response> => {
      const headers: Record<string, string> = { Accept: "application/json" };
      if (options.body !== undefined) headers["Content-Type"] = "application/json";
      if (token) headers.Authorization = `Bearer ${token}`;
      try {
        return await fetch(url, {
          method,
          headers,
          credentials: "same-origin",
          ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
        });
      } catch {
        throw new NetworkError();
      }
    };
    let response = await send(auth ? await this.token() : null);
    if (response.status === 401 && auth) {
      const token = await this.refresh(); // once: a second 401 is the answer
      if (token !== null) response = await send(token);
    }
    if (!response.ok) throw await readError(response);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }
}
