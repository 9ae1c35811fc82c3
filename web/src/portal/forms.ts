// Form fields with their labels and hints wired for assistive technology, and in-page links.

import { h } from "../lib/dom";

let fieldCounter = 0;

interface FieldOptions {
  type?: string;
  autocomplete?: string;
  required?: boolean;
  minlength?: number;
  maxlength?: number;
  placeholder?: string;
  multiline?: boolean;
  describedby?: string; // hint text shown under the field
}

export interface Field {
  wrap: HTMLElement;
  input: HTMLInputElement | HTMLTextAreaElement;
}

export function field(label: string, name: string, options: FieldOptions = {}): Field {
  fieldCounter += 1;
  const id = `f-${name}-${fieldCounter}`;
  const hintId = options.describedby ? `${id}-hint` : null;
  const common = {
    id,
    name,
    required: options.required ?? false,
    autocomplete: options.autocomplete ?? null,
    minlength: options.minlength ?? null,
    maxlength: options.maxlength ?? null,
    placeholder: options.placeholder ?? null,
    "aria-describedby": hintId,
  };
  const input = options.multiline
    ? h("textarea", { ...common, rows: 3 })
    : h("input", { ...common, type: options.type ?? "text" });
  const wrap = h(
    "div",
    {},
    h("label", { for: id }, label),
    input,
    hintId ? h("p", { id: hintId, class: "hint" }, options.describedby) : null,
  );
  return { wrap, input };
}

export function formError(): HTMLElement {
  return h("p", { class: "error", role: "alert" });
}

export function navigate(path: string): void {
  if (path !== window.location.pathname + window.location.search) history.pushState(null, "", path);
  window.dispatchEvent(new Event("ie:navigate"));
  const main = document.getElementById("main");
  main?.focus({ preventScroll: true });
}

/** Same-page links of this app go through the router; others (the dashboard, providers) load. */
export function onLinkClick(event: MouseEvent): void {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const link = (event.target as Element | null)?.closest("a");
  if (!link || link.target || link.dataset.external !== undefined) return;
  const url = new URL(link.href, window.location.href);
  if (url.origin !== window.location.origin) return;
  if (url.pathname.startsWith("/dashboard") || url.pathname.startsWith("/api/")) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}
