// The console's shell: asks the service who the key is (GET /auth/whoami), asks for a key when one is
// needed, keeps the shared event stream, and routes #/... to a page. Each page's render returns a
// function that undoes its subscriptions and timers when another page takes over.

import { ApiError, Stream, call, storeKey, storedKey, whenKeyRefused } from "./api.js";
import { clear, h, notice } from "./dom.js";
import { renderJob } from "./job.js";
import { renderDeadLetters, renderJobs, renderOverview } from "./pages.js";
import { renderSchedules, renderTypes } from "./admin.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const live = document.getElementById("live");
const signOut = document.getElementById("signout");

const ROUTES = [
  [/^\/?$/, "overview", renderOverview],
  [/^\/jobs$/, "jobs", renderJobs],
  [/^\/jobs\/(.+)$/, "jobs", renderJob],
  [/^\/dlq$/, "dlq", renderDeadLetters],
  [/^\/schedules$/, "schedules", renderSchedules],
  [/^\/types$/, "types", renderTypes],
];

let identity = null;
let stream = null;
let cleanup = null;

function can(scope) {
  return identity !== null && identity.scopes.includes(scope);
}

function setLive(state) {
  live.textContent = state === "live" ? "live" : "reconnecting…";
  live.className = `live is-${state}`;
}

async function checkKey() {
  try {
    await call("GET", "/auth/whoami");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) showLogin("The key is no longer valid. Sign in again.");
  }
}

function route() {
  if (identity === null) return;
  if (cleanup) cleanup();
  cleanup = null;
  const raw = location.hash.replace(/^#/, "") || "/";
  const [encodedPath, search] = raw.split("?", 2);
  const path = decodeURIComponent(encodedPath);
  const params = new URLSearchParams(search || "");
  for (const [pattern, name, render] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    for (const link of nav.querySelectorAll("a")) {
      if (link.dataset.page === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const context = { stream, can, identity, params, navigate: (hash) => (location.hash = hash) };
    clear(main);
    document.title = `taskq · ${name}`;
    cleanup = render(context, main, ...match.slice(1)) || null;
    main.focus({ preventScroll: true });
    return;
  }
  clear(main, notice(`No page at ${path}.`, "error"));
}

function startShell() {
  nav.hidden = false;
  for (const link of nav.querySelectorAll("a[data-scope]")) link.hidden = !can(link.dataset.scope);
  who.textContent = identity.auth_required
    ? `${identity.caller} · ${identity.scopes.join(", ")}`
    : "keys not required";
  signOut.hidden = !identity.auth_required;
  if (stream) stream.stop();
  stream = new Stream(setLive, checkKey);
  stream.start();
  route();
}

function showLogin(message) {
  if (cleanup) cleanup();
  cleanup = null;
  if (stream) stream.stop();
  stream = null;
  identity = null;
  storeKey(null);
  nav.hidden = true;
  signOut.hidden = true;
  who.textContent = "";
  live.textContent = "";
  live.className = "live";
  const input = h("input", {
    id: "key",
    name: "key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "tq_…",
  });
  const error = h("p", { class: "notice error", role: "alert", hidden: !message }, message || "");
  const form = h(
    "form",
    { class: "login card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in to taskq"),
    h("p", {}, "This service requires an API key. It is kept in this browser tab only (session storage) and sent as a header, never in a URL."),
    h("label", { for: "key" }, "API key"),
    input,
    error,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    try {
      const answer = await call("GET", "/auth/whoami", undefined, key);
      storeKey(key);
      identity = answer;
      startShell();
    } catch (failure) {
      error.hidden = false;
      error.textContent =
        failure instanceof ApiError && failure.status === 401
          ? "That key is not valid: unknown, revoked or mistyped."
          : `Cannot sign in: ${failure.message}`;
    }
  });
  clear(main, form);
  input.focus();
}

async function boot() {
  signOut.addEventListener("click", () => showLogin(""));
  whenKeyRefused(() => showLogin("The key is no longer valid (revoked?). Sign in again."));
  window.addEventListener("hashchange", route);
  try {
    identity = await call("GET", "/auth/whoami");
    if (identity.auth_required && !storedKey()) throw new ApiError(401, null);
    startShell();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) showLogin(storedKey() ? "The stored key is no longer valid." : "");
    else clear(main, notice(`The service did not answer: ${error.message}`, "error"));
  }
}

boot();
