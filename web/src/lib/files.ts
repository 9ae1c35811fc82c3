// Files, folders, versions, share links and render jobs: the shapes the REST API answers with
// (api/files/*.py), and a few calls the portal and the dashboard share.

import type { Session } from "./api";

export type ScanStatus = "unscanned" | "pending" | "clean" | "infected" | "failed";

export interface Folder {
  id: string;
  owner_id: string;
  parent_id: string | null;
  name: string;
  created_at: string;
  updated_at: string;
}

export interface FileItem {
  id: string;
  owner_id: string;
  folder_id: string | null;
  name: string;
  current_version: number;
  size: number;
  mime_type: string;
  kind: string;
  tags: string[];
  created_at: string;
  updated_at: string;
}

export interface Geometry {
  triangles?: number;
  vertices?: number;
  bbox?: number[][] | Record<string, unknown>;
  extents?: number[];
  volume?: number | null;
  area?: number;
  watertight?: boolean;
  units?: string;
  [key: string]: unknown;
}

export interface VersionMetadata {
  geometry?: Geometry;
  previews?: { job_id: string; outputs: Record<string, string> };
  [key: string]: unknown;
}

export interface Version {
  id: string;
  number: number;
  size: number;
  mime_type: string;
  kind: string;
  original_name: string;
  sha256: string;
  scan_status: ScanStatus;
  downloadable: boolean;
  metadata: VersionMetadata;
  restored_from: number | null;
  created_by: string | null;
  created_at: string;
}

export interface FileDetail extends FileItem {
  current: Version | null;
  access: "owner" | "grant" | "staff";
}

export interface Share {
  id: string;
  file_id: string;
  version: number | null;
  created_by: string | null;
  created_at: string;
  expires_at: string | null;
  password_protected: boolean;
  max_downloads: number | null;
  download_count: number;
  revoked_at: string | null;
}

export interface ShareCreated {
  share: Share;
  token: string;
  url: string;
  download_url: string;
}

export interface ShareAccess {
  id: string;
  at: string;
  ip: string;
  user_agent: string;
  outcome: string;
}

export interface RenderJob {
  id: string;
  file_id: string;
  version_id: string;
  version: number;
  status: "queued" | "running" | "succeeded" | "failed";
  progress: number;
  stage: string;
  error_code: string;
  error_message: string;
  outputs: Record<string, string>;
  metadata: Record<string, unknown>;
}

/** `render:progress`, `render:completed`, `render:failed` and `file:scanned` on the socket. */
export interface RenderEvent {
  job_id: string;
  file_id: string;
  version_id: string;
  progress?: number;
  stage?: string;
  error_code?: string;
  outputs?: Record<string, string>;
  metadata?: Record<string, unknown>;
}

export interface ScanEvent {
  file_id: string;
  version_id: string;
  version: number;
  status: ScanStatus;
  signature?: string | null;
}

/** The kinds the render farm makes previews of (storage/inspect's kinds). */
export const RENDERABLE = new Set(["stl", "obj", "ply", "off", "glb", "gltf", "3mf", "step", "iges"]);

export const SCAN_TEXT: Record<ScanStatus, string> = {
  unscanned: "Not scanned (no virus scanner on this server)",
  pending: "Virus scan pending",
  clean: "Scanned: clean",
  infected: "Infected: blocked",
  failed: "Scan failed: blocked",
};

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function outputUrl(jobId: string, name: string): string {
  return `/api/v1/render-jobs/${jobId}/outputs/${name}`;
}

/** GET an authenticated binary (a render output, a download) into an object URL. */
export async function fetchBlobUrl(session: Session, url: string): Promise<string> {
  const blob = await fetchBlob(session, url);
  return URL.createObjectURL(blob);
}

export async function fetchBlob(session: Session, url: string): Promise<Blob> {
  const send = async (token: string | null) =>
    fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {}, credentials: "same-origin" });
  let response = await send(await session.token());
  if (response.status === 401) response = await send(await session.refresh());
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.blob();
}

/** Save a download under its name (the route needs the bearer token, so no plain link). */
export async function saveDownload(session: Session, url: string, name: string): Promise<void> {
  const href = await fetchBlobUrl(session, url);
  const link = document.createElement("a");
  link.href = href;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(href), 30_000);
}
