// A few DOM helpers: building elements (text is always set as text, never parsed as HTML),
// a polite live region for announcements, and the offline banner.

import type { ConnectionState, HubSocket } from "./socket";

type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | null | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") {
      element.addEventListener(name.replace(/^on/, "").toLowerCase(), value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

export function clear(element: Element): void {
  element.replaceChildren();
}

/** Rebuild `container`'s content without taking the keyboard focus away: a control focused
 * inside it is focused again in the new content (the one of the same kind and text). */
export function rebuildKeepingFocus(container: Element, build: () => void): void {
  const active = document.activeElement;
  const focused = active instanceof HTMLElement && container.contains(active) ? active : null;
  const text = focused?.textContent ?? "";
  build();
  if (!focused) return;
  for (const candidate of container.querySelectorAll<HTMLElement>(focused.tagName)) {
    if (candidate.textContent === text) {
      candidate.focus();
      return;
    }
  }
}

let liveRegion: HTMLElement | null = null;

/** Read out a short status to screen readers. */
export function announce(text: string): void {
  if (!liveRegion) {
    liveRegion = h("div", { class: "visually-hidden", role: "status", "aria-live": "polite" });
    document.body.append(liveRegion);
  }
  liveRegion.textContent = "";
  window.setTimeout(() => {
    if (liveRegion) liveRegion.textContent = text;
  }, 50);
}

const BANNER_TEXT: Record<ConnectionState, string> = {
  online: "",
  connecting: "Reconnecting… Messages you write are kept and sent once the connection is back.",
  offline: "You are offline. Messages you write are kept and sent when you are back online.",
  "signed-out": "Your session has ended. Please sign in again.",
};

/** The banner that says the page is not connected; hidden while online. */
export function connectionBanner(socket: HubSocket): HTMLElement {
  const banner = h("div", { class: "banner", id: "connection-banner", role: "status", hidden: true });
  let shownTimer: number | undefined;
  socket.onState((state) => {
    window.clearTimeout(shownTimer);
    banner.dataset.state = state;
    const show = () => {
      banner.textContent = BANNER_TEXT[state];
      banner.hidden = state === "online";
    };
    // A first connect takes a moment: say "reconnecting" only if it drags on.
    if (state === "connecting") shownTimer = window.setTimeout(show, 1500);
    else show();
  });
  return banner;
}

export function formatTime(iso: string): string {
  const date = new Date(iso);
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function formatDateTime(iso: string): string {
  const date = new Date(iso);
  return date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export function shortId(id: string): string {
  return id.replace(/-/g, "").slice(-6);
}

export function errorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  return "Something went wrong";
}

/** A form whose submit runs `action`: the error line is cleared first and shows what failed
 * (the form stays as it was, so the person can correct and resend). */
export function actionForm(
  options: { class: string; error: HTMLElement; onError?: () => void },
  action: () => Promise<void>,
  ...children: (Child | Child[])[]
): HTMLFormElement {
  return h(
    "form",
    {
      class: options.class,
      onsubmit: async (event: Event) => {
        event.preventDefault();
        options.error.textContent = "";
        try {
          await action();
        } catch (e) {
          options.error.textContent = errorText(e);
          options.onError?.();
        }
      },
    },
    ...children,
  );
}
