// Uploads over tus (tus-js-client): progress, pause (abort) and resume (start again), and
// resume after a page reload: tus-js-client keeps each upload's URL in localStorage under the
// file's fingerprint (name, type, size, modification time), so choosing the same file again
// continues where the server stopped, instead of sending it all again.

import { Upload, defaultOptions, type PreviousUpload } from "tus-js-client";
import type { Session } from "./api";

export const UPLOAD_ENDPOINT = "/api/v1/uploads/";
const CHUNK_SIZE = 256 * 1024; // a pause loses at most the chunk in flight

export type UploadState = "uploading" | "paused" | "done" | "failed";

export interface UploadResult {
  fileId: string;
  version: number;
}

export interface UploadCallbacks {
  onProgress: (sent: number, total: number) => void;
  onState: (state: UploadState, detail?: string) => void;
  onDone: (result: UploadResult) => void;
  onResumed?: (offset: number) => void;
}

export interface UploadTarget {
  folderId?: string | null;
  fileId?: string | null; // a new version of this file
}

/** Uploads that were started in this browser and never finished (their file must be chosen
 * again to continue: a page cannot keep a file across a reload). */
export async function unfinishedUploads(): Promise<PreviousUpload[]> {
  try {
    return await defaultOptions.urlStorage.findAllUploads();
  } catch {
    return [];
  }
}

export async function forgetUpload(previous: PreviousUpload): Promise<void> {
  await defaultOptions.urlStorage.removeUpload(previous.urlStorageKey);
}

function errorMessage(error: Error): string {
  const response = (error as Error & { originalResponse?: { getBody(): string } | null }).originalResponse;
  if (response) {
    try {
      const body = JSON.parse(response.getBody()) as { error?: { message?: string } };
      if (body.error?.message) return body.error.message;
    } catch {
      // not JSON
    }
  }
  return error.message.split("\n")[0] ?? "The upload failed";
}

export class TusUpload {
  private readonly upload: Upload;
  state: UploadState = "uploading";

  constructor(
    session: Session,
    readonly file: File,
    target: UploadTarget,
    private readonly callbacks: UploadCallbacks,
  ) {
    const metadata: Record<string, string> = { filename: file.name, filetype: file.type || "application/octet-stream" };
    if (target.folderId) metadata.folder_id = target.folderId;
    if (target.fileId) metadata.file_id = target.fileId;
    this.upload = new Upload(file, {
      endpoint: UPLOAD_ENDPOINT,
      chunkSize: CHUNK_SIZE,
      metadata,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onBeforeRequest: async (request) => {
        const token = await session.token();
        if (token) request.setHeader("Authorization", `Bearer ${token}`);
      },
      onProgress: (sent, total) => this.callbacks.onProgress(sent, total),
      onError: (error) => {
        this.state = "failed";
        this.callbacks.onState("failed", errorMessage(error));
      },
      onSuccess: (payload) => {
        this.state = "done";
        const response = payload.lastResponse;
        const fileId = response.getHeader("X-File-Id") ?? "";
        const version = Number(response.getHeader("X-File-Version") ?? "1");
        this.callbacks.onState("done");
        this.callbacks.onDone({ fileId, version });
      },
    });
  }

  /** Start, continuing an earlier upload of the same file when this browser has one. */
  async start(): Promise<void> {
    const previous = await this.upload.findPreviousUploads();
    const latest = previous.sort((a, b) => b.creationTime.localeCompare(a.creationTime))[0];
    if (latest) {
      this.upload.resumeFromPreviousUpload(latest);
      this.callbacks.onResumed?.(0);
    }
    this.state = "uploading";
    this.callbacks.onState("uploading");
    this.upload.start();
  }

  async pause(): Promise<void> {
    if (this.state !== "uploading") return;
    this.state = "paused";
    this.callbacks.onState("paused");
    await this.upload.abort(false); // keep the upload on the server, to resume
  }

  resume(): void {
    if (this.state !== "paused" && this.state !== "failed") return;
    this.state = "uploading";
    this.callbacks.onState("uploading");
    this.upload.start();
  }

  async cancel(): Promise<void> {
    this.state = "failed";
    await this.upload.abort(true).catch(() => undefined); // terminate it on the server
  }
}
