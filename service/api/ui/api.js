// The console's only way to the service: HTTP calls with the key as a Bearer header, and one shared
// WebSocket on the event stream that resumes with ?after= after any disconnect.
//
// The key lives in this tab's sessionStorage: it survives a reload, dies with the tab, and never
// appears in a URL (a URL ends up in the history, in Referer headers and in proxy logs).

const KEY_ITEM = "taskq.key";
// The stream takes the key as a subprotocol (a browser cannot set headers on a WebSocket). base64url
// keeps any key a valid protocol token; the service answers with plain "taskq", never the key.
const PROTOCOL = "taskq";
const KEY_PROTOCOL = "taskq.bearer.";

export function storedKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

export function storeKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

// Set by the shell: called when the stored key is refused (revoked while the page is open).
let onRefusedKey = null;

export function whenKeyRefused(callback) {
  onRefusedKey = callback;
}

export class ApiError extends Error {
  constructor(status, problem) {
    const detail = (problem && (problem.detail || problem.title)) || `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.problem = problem;
  }
}

// One call: resolves to the parsed JSON body (null for 204), rejects with ApiError carrying the
// problem document the service answered.
export async function call(method, path, body, key = storedKey()) {
  const headers = { Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, { detail: `the service did not answer (${error.message})` });
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { detail: text.slice(0, 200) };
  }
  if (response.status === 401 && key && key === storedKey() && onRefusedKey) onRefusedKey();
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export const get = (path) => call("GET", path);

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

// The event stream, shared by every page: one socket for the tab. Listeners get each event object;
// `onState` hears "live" / "reconnecting". After a close it reconnects with ?after=<last seq seen>, so
// no event is lost while the service still keeps it; the delay grows to 5 s while it keeps failing.
export class Stream {
  constructor(onState, onRefused) {
    this.listeners = new Set();
    this.onState = onState;
    this.onRefused = onRefused; // the handshake keeps failing: the caller checks whether the key still works
    this.after = null;
    this.failures = 0;
    this.socket = null;
    this.stopped = false;
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "console closed");
    this.socket = null;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/jobs/stream${query({ after: this.after })}`;
    const key = storedKey();
    const protocols = key ? [PROTOCOL, KEY_PROTOCOL + base64url(key)] : [PROTOCOL];
    const socket = new WebSocket(url, protocols);
    this.socket = socket;
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
      this.failures = 0;
      this.onState("live");
    });
    socket.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (typeof event.seq === "number") this.after = event.seq;
      for (const listener of this.listeners) {
        try {
          listener(event);
        } catch (error) {
          console.error("stream listener failed", error);
        }
      }
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket || this.stopped) return;
      this.onState("reconnecting");
      if (!opened) this.failures += 1;
      if (this.failures >= 3 && this.onRefused) this.onRefused();
      const delay = Math.min(5000, 250 * 2 ** Math.min(this.failures, 5));
      this.timer = setTimeout(() => this.connect(), opened ? 0 : delay);
    });
  }
}
