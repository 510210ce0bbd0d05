// Small DOM helpers shared by the pages: element builders, formatting, the confirmation dialog.
// Everything is built with createElement and textContent, never innerHTML, so a job id, an error or a
// log line from the service is always text, never markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "upstream_failed"]);
export const STATUSES = [
  "blocked",
  "pending",
  "scheduled",
  "running",
  "succeeded",
  "failed",
  "cancelled",
  "upstream_failed",
];
export const PRIORITIES = ["critical", "high", "normal", "low"];

export function badge(status) {
  return h("span", { class: `badge st-${status}`, "data-status": status }, status.replace("_", " "));
}

export function jobLink(jobId, text = jobId) {
  return h("a", { href: `#/jobs/${encodeURIComponent(jobId)}`, class: "job-link" }, text);
}

export function time(iso) {
  if (!iso) return "–";
  const when = new Date(iso);
  return h("time", { datetime: iso, title: iso }, when.toLocaleTimeString([], { hour12: false }));
}

export function dateTime(iso) {
  if (!iso) return "–";
  const when = new Date(iso);
  return h("time", { datetime: iso, title: iso }, `${when.toLocaleDateString()} ${when.toLocaleTimeString([], { hour12: false })}`);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function between(startIso, endIso) {
  if (!startIso) return null;
  const end = endIso ? new Date(endIso) : new Date();
  return (end - new Date(startIso)) / 1000;
}

export function fromNow(iso) {
  const seconds = (new Date(iso) - new Date()) / 1000;
  if (Math.abs(seconds) < 1) return "now";
  return seconds > 0 ? `in ${duration(seconds)}` : `${duration(-seconds)} ago`;
}

export function progressBar(progress) {
  if (!progress || typeof progress.fraction !== "number") return null;
  const fraction = Math.max(0, Math.min(1, progress.fraction));
  const label = `${Math.round(fraction * 100)}%${progress.message ? ` ${progress.message}` : ""}`;
  return h(
    "span",
    { class: "progress" },
    h("progress", { max: "1", value: String(fraction), "aria-label": label }),
    h("span", { class: "progress-label" }, label),
  );
}

export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

export function notice(text, kind = "info") {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

export function clear(element, ...children) {
  element.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  return element;
}

// A modal confirmation: resolves true when the user confirms. <dialog> gives focus trapping and Esc.
export function confirmAction(title, text, confirmLabel) {
  const dialog = document.getElementById("confirm");
  dialog.querySelector("h2").textContent = title;
  dialog.querySelector("p").textContent = text;
  const ok = dialog.querySelector("button[value=confirm]");
  ok.textContent = confirmLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
  });
}

// Calls `work` at most once per `ms`, the last request winning: for live refreshes driven by events.
export function throttle(work, ms) {
  let timer = null;
  let again = false;
  return () => {
    if (timer) {
      again = true;
      return;
    }
    work();
    timer = setTimeout(function tick() {
      timer = null;
      if (again) {
        again = false;
        work();
        timer = setTimeout(tick, ms);
      }
    }, ms);
  };
}
