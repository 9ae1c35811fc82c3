// Web push opt-in: register the service worker (/sw.js), subscribe with the hub's VAPID key,
// and hand the subscription to the hub. The worker shows pushes and opens their link.

import type { Session } from "./api";

export type PushState = "unsupported" | "denied" | "enabled" | "available";

function keyBytes(base64url: string): Uint8Array<ArrayBuffer> {
  const padded = base64url.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(base64url.length / 4) * 4, "=");
  const raw = atob(padded);
  const bytes = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

export function pushSupported(): boolean {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

export async function pushState(): Promise<PushState> {
  if (!pushSupported()) return "unsupported";
  if (Notification.permission === "denied") return "denied";
  const registration = await navigator.serviceWorker.getRegistration("/");
  const subscription = await registration?.pushManager.getSubscription();
  return subscription ? "enabled" : "available";
}

export async function enablePush(session: Session): Promise<void> {
  const registration = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  await navigator.serviceWorker.ready;
  const { public_key } = await session.request<{ public_key: string }>(
    "GET",
    "/push/vapid-public-key",
  );
  const subscription = await registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: keyBytes(public_key),
  });
  await session.request("POST", "/push/subscriptions", { body: subscription.toJSON() });
}

export async function disablePush(session: Session): Promise<void> {
  const registration = await navigator.serviceWorker.getRegistration("/");
  const subscription = await registration?.pushManager.getSubscription();
  if (!subscription) return;
  await session.request("DELETE", "/push/subscriptions", {
    body: { endpoint: subscription.endpoint },
  });
  await subscription.unsubscribe();
}
