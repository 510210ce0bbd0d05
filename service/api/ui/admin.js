// Schedules (GET/PATCH/DELETE /schedules) and per-type controls (GET /types, PATCH /types/{type}).
// A service without these routes answers 404: the page then says the feature is not available there.

import { ApiError, call, get } from "./api.js";
import { clear, confirmAction, dateTime, h, notice } from "./dom.js";

function listOf(answer, ...names) {
  if (Array.isArray(answer)) return answer;
  for (const name of names) if (answer && Array.isArray(answer[name])) return answer[name];
  return [];
}

function unavailable(root, heading, error, what) {
  if (error instanceof ApiError && error.status === 404) {
    clear(root, h("h1", {}, heading), notice(`${what} are not available on this service (its API has no ${heading.toLowerCase()} routes).`, "unavailable"));
  } else if (error instanceof ApiError && error.status === 403) {
    clear(root, h("h1", {}, heading), notice(`This key may not see ${what.toLowerCase()}: ${error.message}`, "error"));
  } else {
    clear(root, h("h1", {}, heading), notice(error.message, "error"));
  }
}

// ------------------------------------------------------------------------------------------- schedules

export function renderSchedules(context, root) {
  const message = h("div", { "aria-live": "polite" });
  const body = h("tbody", {});
  let stopped = false;

  async function patch(schedule, change, done) {
    try {
      await call("PATCH", `/schedules/${encodeURIComponent(schedule.schedule_id)}`, change);
      clear(message, notice(done, "ok"));
      await load();
    } catch (error) {
      clear(message, notice(error.message, "error"));
    }
  }

  function row(schedule) {
    const buttons = [];
    if (context.can("admin")) {
      const toggle = h("button", { type: "button" }, schedule.paused ? "Resume" : "Pause");
      toggle.addEventListener("click", () =>
        patch(schedule, { paused: !schedule.paused }, `${schedule.schedule_id} ${schedule.paused ? "resumed" : "paused"}.`),
      );
      const remove = h("button", { type: "button", class: "danger" }, "Delete");
      remove.addEventListener("click", async () => {
        if (!(await confirmAction(`Delete schedule ${schedule.schedule_id}?`, "It fires no more; jobs it already submitted stay.", "Delete"))) return;
        try {
          await call("DELETE", `/schedules/${encodeURIComponent(schedule.schedule_id)}`);
          clear(message, notice(`${schedule.schedule_id} deleted.`, "ok"));
          await load();
        } catch (error) {
          clear(message, notice(error.message, "error"));
        }
      });
      buttons.push(toggle, remove);
    }
    const next = (schedule.next_fire_times || []).slice(0, 3);
    return h(
      "tr",
      { "data-schedule": schedule.schedule_id },
      h("td", { class: "id" }, schedule.schedule_id),
      h("td", {}, h("code", {}, schedule.cron), h("div", { class: "muted" }, schedule.timezone || "UTC")),
      h("td", { class: "opt" }, schedule.job?.type ?? "–"),
      h("td", { class: "opt" }, `${schedule.overlap ?? "–"} / ${schedule.catch_up ?? "–"}`),
      h("td", {}, schedule.paused ? h("span", { class: "badge paused" }, "paused") : h("span", { class: "badge st-running" }, "active")),
      h("td", {}, next.length ? h("ul", { class: "plain" }, next.map((t) => h("li", {}, dateTime(t)))) : "–"),
      h("td", { class: "opt" }, dateTime(schedule.last_fired_at)),
      h("td", { class: "actions" }, buttons),
    );
  }

  async function load() {
    try {
      const schedules = listOf(await get("/schedules"), "items", "schedules");
      if (stopped) return;
      clear(body, schedules.map(row));
      if (!root.contains(body)) {
        clear(
          root,
          h("h1", {}, "Schedules"),
          message,
          h(
            "div",
            { class: "scroll" },
            h(
              "table",
              { class: "schedules" },
              h("thead", {}, h("tr", {}, ["Schedule", "Cron", "Job type", "Overlap / catch-up", "State", "Next fires", "Last fired", ""].map((t, i) => h("th", { class: [2, 3, 6].includes(i) ? "opt" : null }, t)))),
              body,
            ),
          ),
        );
      }
      if (!schedules.length) clear(message, notice("No schedule yet. Create one with POST /schedules or `taskq schedules`."));
    } catch (error) {
      if (!stopped) unavailable(root, "Schedules", error, "Schedules");
    }
  }

  clear(root, h("h1", {}, "Schedules"), notice("Loading…"));
  load();
  return () => {
    stopped = true;
  };
}

// ----------------------------------------------------------------------------------------------- types

const CONTROLS = new Set(["type", "name", "paused", "max_running", "max_starts_per_second"]);

function limitInput(name, label, value, step) {
  return h(
    "label",
    { class: "limit" },
    label,
    h("input", { name, type: "number", min: "0", step, value: value ?? "", placeholder: "no limit", inputmode: "decimal" }),
  );
}

export function renderTypes(context, root) {
  const message = h("div", { "aria-live": "polite" });
  const body = h("tbody", {});
  let stopped = false;

  async function patch(type, change, done) {
    try {
      await call("PATCH", `/types/${encodeURIComponent(type)}`, change);
      clear(message, notice(done, "ok"));
      await load();
    } catch (error) {
      clear(message, notice(`${type}: ${error.message}`, "error"));
    }
  }

  function counts(entry) {
    // Live counts come under whatever names the service gives them: every number that is not a control.
    const source = entry.counts && typeof entry.counts === "object" ? entry.counts : entry;
    return Object.entries(source)
      .filter(([name, value]) => !CONTROLS.has(name) && typeof value === "number")
      .map(([name, value]) => h("span", { class: "count" }, `${name.replaceAll("_", " ")} ${value}`));
  }

  function row(entry) {
    const type = entry.type ?? entry.name;
    const cells = [];
    if (context.can("admin")) {
      const toggle = h("button", { type: "button" }, entry.paused ? "Resume" : "Pause");
      toggle.addEventListener("click", () => patch(type, { paused: !entry.paused }, `${type} ${entry.paused ? "resumed" : "paused"}.`));
      const form = h(
        "form",
        { class: "limits" },
        limitInput("max_running", "Max running", entry.max_running, "1"),
        limitInput("max_starts_per_second", "Max starts/s", entry.max_starts_per_second, "any"),
        h("button", { type: "submit" }, "Save limits"),
      );
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const number = (name) => {
          const text = String(data.get(name) || "").trim();
          return text === "" ? null : Number(text);
        };
        patch(type, { max_running: number("max_running"), max_starts_per_second: number("max_starts_per_second") }, `${type}: limits saved.`);
      });
      cells.push(h("td", { class: "actions" }, toggle, form));
    } else {
      cells.push(
        h("td", {}, `max running ${entry.max_running ?? "∞"}, max starts/s ${entry.max_starts_per_second ?? "∞"}`),
      );
    }
    return h(
      "tr",
      { "data-type": type },
      h("td", { class: "id" }, h("a", { href: `#/jobs?type=${encodeURIComponent(type)}` }, type)),
      h("td", {}, entry.paused ? h("span", { class: "badge paused" }, "paused") : h("span", { class: "badge st-running" }, "active")),
      h("td", { class: "opt" }, counts(entry)),
      cells,
    );
  }

  async function load() {
    try {
      const types = listOf(await get("/types"), "items", "types");
      if (stopped) return;
      clear(body, types.map(row));
      if (!root.contains(body)) {
        clear(
          root,
          h("h1", {}, "Types"),
          h("p", { class: "muted" }, "A paused type's jobs keep their place and wait; running ones finish. Empty limits mean none."),
          message,
          h(
            "div",
            { class: "scroll" },
            h("table", { class: "types" }, h("thead", {}, h("tr", {}, h("th", {}, "Type"), h("th", {}, "State"), h("th", { class: "opt" }, "Now"), h("th", {}, "Controls"))), body),
          ),
        );
      }
    } catch (error) {
      if (!stopped) unavailable(root, "Types", error, "Type controls");
    }
  }

  clear(root, h("h1", {}, "Types"), notice("Loading…"));
  load();
  // Counts change with every job: re-read them when the stream says something happened, at most every 2 s.
  let pending = null;
  const unsubscribe = context.stream.subscribe(() => {
    if (pending || root.querySelector("form.limits input:focus")) return;
    pending = setTimeout(() => {
      pending = null;
      if (!root.querySelector("form.limits input:focus")) load();
    }, 2000);
  });
  return () => {
    stopped = true;
    unsubscribe();
    clearTimeout(pending);
  };
}
