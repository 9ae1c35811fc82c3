// Shapes of what the hub sends, as documented in ARCHITECTURE.md and the OpenAPI document.

export type Role = "customer" | "editor" | "admin" | "super_admin";

export interface User {
  id: string;
  email: string;
  display_name: string;
  role: Role;
  is_active: boolean;
  email_verified: boolean;
  created_at: string;
  last_login_at: string | null;
}

export interface TokenPair {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token: string | null;
  csrf_token: string | null;
}

export interface Message {
  id: string;
  conversation_id: string;
  seq: number;
  sender_id: string | null;
  kind: string;
  body: string;
  attachments: Record<string, unknown>[];
  created_at: string;
  client_msg_id: string | null;
}

export type ConversationStatus = "open" | "pending" | "resolved";

export interface Conversation {
  id: string;
  customer_id: string;
  assignee_id: string | null;
  subject: string;
  status: string;
  last_seq: number;
  created_at: string;
  last_message_at: string | null;
}

export interface AppNotification {
  id: string;
  type: string;
  title: string;
  body: string;
  link: string;
  data: Record<string, unknown>;
  created_at: string;
  read: boolean;
}

export interface Presence {
  user_id: string;
  online: boolean;
  status: "online" | "away" | "busy" | "offline";
  activity: "active" | "idle";
}

export interface OAuthProvider {
  name: string;
  label: string;
  start_url: string;
}

export interface CannedReply {
  id: string;
  shortcut: string;
  title: string;
  body: string;
}

export interface BusEvent {
  id: string;
  type: string;
  occurred_at: string;
  actor_id: string | null;
  subject: string | null;
  data: Record<string, unknown>;
}

export interface DashboardEvent {
  type: string;
  event: BusEvent;
}

export interface AckError {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export type Ack<T> = ({ ok: true } & T) | { ok: false; error: AckError };

export const STAFF_ROLES: readonly Role[] = ["editor", "admin", "super_admin"];

export function isStaff(user: User): boolean {
  return STAFF_ROLES.includes(user.role);
}
