// What a portal page gets from the shell: the session, the live socket, and a place to put
// the clean-ups that run when the reader leaves the page.

import type { Session } from "../lib/api";
import type { HubSocket } from "../lib/socket";

export interface PageContext {
  session: Session;
  socket: HubSocket;
  onLeave: (cleanup: () => void) => void;
}

/** Listen to a socket event while the page is on screen. */
export function listen<T>(context: PageContext, event: string, handler: (data: T) => void): void {
  const raw = handler as (...args: unknown[]) => void;
  context.socket.socket.on(event, raw);
  context.onLeave(() => context.socket.socket.off(event, raw));
}
