// The overview, the jobs table and the dead letter queue. Each page loads its data over HTTP, then
// follows the shared event stream so that it changes without a reload.

import { ApiError, call, get, query } from "./api.js";
import {
  PRIORITIES,
  STATUSES,
  badge,
  clear,
  confirmAction,
  dateTime,
  h,
  jobLink,
  notice,
  progressBar,
  s,
  throttle,
  time,
} from "./dom.js";

function failure(error) {
  if (error instanceof ApiError && error.status === 403) return notice(`This key may not see this: ${error.message}`, "error");
  return notice(error.message, "error");
}

// ---------------------------------------------------------------------------------------------- overview

function meter(label, used, capacity, unit) {
  const fraction = capacity > 0 ? used / capacity : 0;
  return h(
    "div",
    { class: "gauge" },
    h("div", { class: "gauge-label" }, h("span", {}, label), h("span", {}, `${used} / ${capacity} ${unit}`)),
    h("meter", { min: "0", max: String(capacity || 1), value: String(used), high: String(capacity * 0.9), "aria-label": label }),
    h("div", { class: "gauge-note" }, `${Math.round(fraction * 100)}% in use`),
  );
}

function nodesTable(nodes) {
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { class: "nodes" },
      h("thead", {}, h("tr", {}, ["Node", "Role", "CPU", "Memory", "Running", "Last seen"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        nodes.map((node) =>
          h(
            "tr",
            { "data-node": node.name },
            h("td", {}, node.name),
            h("td", {}, node.leader ? h("span", { class: "badge leader" }, "leader") : "member"),
            h("td", {}, `${node.in_use?.cpu_units ?? "?"} / ${node.capacity?.cpu_units ?? "?"}`),
            h("td", {}, `${node.in_use?.memory_mb ?? "?"} / ${node.capacity?.memory_mb ?? "?"} MB`),
            h("td", {}, String(node.running ?? "–")),
            h("td", {}, time(node.last_seen)),
          ),
        ),
      ),
    ),
  );
}

function throughputChart(minutes) {
  const width = 600;
  const height = 140;
  const top = Math.max(1, ...minutes.map((m) => m.succeeded + m.failed));
  const slot = width / Math.max(1, minutes.length);
  const bar = Math.max(2, slot * 0.7);
  const bars = minutes.flatMap((m, i) => {
    const x = i * slot + (slot - bar) / 2;
    const ok = (m.succeeded / top) * (height - 20);
    const bad = (m.failed / top) * (height - 20);
    const label = `${new Date(m.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false })}: ${m.succeeded} succeeded, ${m.failed} failed, ${m.retried} retried, ${m.started} started`;
    return [
      s("rect", { class: "bar-ok", x, y: height - ok, width: bar, height: ok }, s("title", {}, label)),
      s("rect", { class: "bar-failed", x, y: height - ok - bad, width: bar, height: bad }, s("title", {}, label)),
    ];
  });
  const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  // Stretched to the card's width (preserveAspectRatio none): bars only, the labels are HTML below.
  return h(
    "figure",
    { class: "chart-figure" },
    s(
      "svg",
      { class: "chart", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img", "aria-label": "jobs finished per minute" },
      s("line", { class: "axis", x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5 }),
      bars,
    ),
    h(
      "figcaption",
      { class: "chart-scale" },
      h("span", {}, minutes.length ? clock(minutes[0].at) : ""),
      h("span", {}, minutes.some((m) => m.succeeded + m.failed) ? `tallest bar: ${top} per minute` : "nothing finished"),
      h("span", {}, "now"),
    ),
  );
}

export function renderOverview(context, root) {
  const capacity = h("section", { class: "card", "aria-labelledby": "cap-title" }, h("h2", { id: "cap-title" }, "Capacity"));
  const counts = h("section", { class: "card", "aria-labelledby": "counts-title" }, h("h2", { id: "counts-title" }, "Jobs by status"));
  const flow = h("section", { class: "card wide", "aria-labelledby": "flow-title" }, h("h2", { id: "flow-title" }, "Last 15 minutes"));
  clear(root, h("h1", {}, "Overview"), h("div", { class: "grid" }, capacity, counts, flow));
  let stopped = false;

  async function loadStats() {
    try {
      const stats = await get("/stats");
      if (stopped) return;
      const parts = [
        meter("CPU units", stats.resources_in_use.cpu_units, stats.capacity.cpu_units, "units"),
        meter("Memory", stats.resources_in_use.memory_mb, stats.capacity.memory_mb, "MB"),
      ];
      if (Array.isArray(stats.nodes) && stats.nodes.length) parts.push(h("h3", {}, "Nodes"), nodesTable(stats.nodes));
      clear(capacity, h("h2", { id: "cap-title" }, "Capacity"), parts);
      clear(
        counts,
        h("h2", { id: "counts-title" }, "Jobs by status"),
        h(
          "ul",
          { class: "tiles" },
          STATUSES.map((status) =>
            h(
              "li",
              {},
              h(
                "a",
                { href: `#/jobs?status=${status}`, class: `tile st-${status}`, "data-count": status },
                h("span", { class: "tile-count" }, String(stats.jobs_by_status[status] ?? 0)),
                h("span", { class: "tile-label" }, status.replace("_", " ")),
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      if (!stopped) clear(counts, h("h2", {}, "Jobs by status"), failure(error));
    }
  }

  async function loadFlow() {
    try {
      const answer = await get("/stats/throughput?minutes=15");
      if (stopped) return;
      const sum = (field) => answer.minutes.reduce((total, m) => total + m[field], 0);
      clear(
        flow,
        h("h2", { id: "flow-title" }, "Last 15 minutes"),
        h(
          "p",
          { class: "totals" },
          h("span", { class: "ok", "data-total": "succeeded" }, `${sum("succeeded")} succeeded`),
          h("span", { class: "bad", "data-total": "failed" }, `${sum("failed")} failed`),
          h("span", { "data-total": "retried" }, `${sum("retried")} retried`),
          h("span", { "data-total": "started" }, `${sum("started")} started`),
        ),
        throughputChart(answer.minutes),
        h("p", { class: "legend" }, h("span", { class: "key-ok" }, "succeeded"), h("span", { class: "key-failed" }, "failed")),
      );
    } catch (error) {
      if (!stopped) clear(flow, h("h2", {}, "Last 15 minutes"), failure(error));
    }
  }

  const statsSoon = throttle(loadStats, 1000);
  const flowSoon = throttle(loadFlow, 5000);
  const unsubscribe = context.stream.subscribe(() => {
    statsSoon();
    flowSoon();
  });
  // The minute buckets move on even when nothing happens.
  const ticker = setInterval(loadFlow, 30000);
  loadStats();
  loadFlow();
  return () => {
    stopped = true;
    unsubscribe();
    clearInterval(ticker);
  };
}

// -------------------------------------------------------------------------------------------------- jobs

function matches(filters, event) {
  return (
    (!filters.status || event.status === filters.status) &&
    (!filters.type || event.type === filters.type) &&
    (!filters.priority || event.priority === filters.priority) &&
    (!filters.id_prefix || event.job_id.startsWith(filters.id_prefix))
  );
}

function select(name, label, options, value) {
  return h(
    "label",
    {},
    label,
    h(
      "select",
      { name },
      h("option", { value: "" }, "any"),
      options.map((o) => h("option", { value: o, selected: o === value }, o.replace("_", " "))),
    ),
  );
}

export function renderJobs(context, root) {
  const filters = {
    status: context.params.get("status") || "",
    type: context.params.get("type") || "",
    priority: context.params.get("priority") || "",
    id_prefix: context.params.get("id_prefix") || "",
  };
  const form = h(
    "form",
    { class: "filters", role: "search" },
    select("status", "Status", STATUSES, filters.status),
    h("label", {}, "Type", h("input", { name: "type", value: filters.type, placeholder: "any", autocomplete: "off" })),
    select("priority", "Priority", PRIORITIES, filters.priority),
    h("label", {}, "Id starts with", h("input", { name: "id_prefix", value: filters.id_prefix, placeholder: "any", autocomplete: "off" })),
    h("button", { type: "submit" }, "Filter"),
  );
  const body = h("tbody", {});
  const table = h(
    "table",
    { class: "jobs" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "Job"),
        h("th", {}, "Status"),
        h("th", { class: "opt" }, "Type"),
        h("th", { class: "opt" }, "Priority"),
        h("th", { class: "opt" }, "Attempts"),
        h("th", {}, "Changed"),
      ),
    ),
    body,
  );
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const status = h("p", { class: "muted", "aria-live": "polite" }, "Loading…");
  clear(root, h("h1", {}, "Jobs"), form, status, h("div", { class: "scroll" }, table), more);

  // 50 a page; `limit` in the address (1-500) changes it, as it does for the API.
  const pageSize = Math.min(500, Math.max(1, Number.parseInt(context.params.get("limit") || "50", 10) || 50));
  const rows = new Map(); // job_id -> {tr, cells, latest}
  let cursor = null;
  let loaded = false;
  const early = []; // events that came while the first page loaded

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const name of ["status", "type", "priority", "id_prefix"]) next[name] = String(data.get(name) || "").trim();
    context.navigate(`#/jobs${query(next)}`);
  });
  for (const element of form.querySelectorAll("select")) element.addEventListener("change", () => form.requestSubmit());

  function row(job) {
    const cells = {
      status: h("td", { class: "status" }),
      attempts: h("td", { class: "opt num" }, String(job.attempt_count ?? 0)),
      changed: h("td", {}),
    };
    const tr = h(
      "tr",
      { "data-job": job.job_id },
      h("td", { class: "id" }, jobLink(job.job_id)),
      cells.status,
      h("td", { class: "opt" }, job.type),
      h("td", { class: "opt" }, job.priority),
      cells.attempts,
      cells.changed,
    );
    const entry = { tr, cells, status: job.status, progress: job.progress || null, latest: "" };
    rows.set(job.job_id, entry);
    paint(entry, job.status, job.finished_at || job.started_at || job.created_at);
    entry.latest = job.finished_at || job.started_at || job.created_at || "";
    return tr;
  }

  function paint(entry, statusValue, at) {
    entry.status = statusValue;
    if (statusValue !== "running") entry.progress = null;
    clear(entry.cells.status, badge(statusValue), statusValue === "running" ? progressBar(entry.progress) : null);
    clear(entry.cells.changed, time(at));
    entry.tr.classList.toggle("stale", Boolean(filters.status) && statusValue !== filters.status);
  }

  function apply(event) {
    if (!event.job_id) return;
    const entry = rows.get(event.job_id);
    if (entry) {
      if (event.timestamp && entry.latest && event.timestamp < entry.latest) return; // older than what we show
      entry.latest = event.timestamp || entry.latest;
      if (event.event === "progress" && event.progress) entry.progress = event.progress;
      if (typeof event.attempt === "number") clear(entry.cells.attempts, String(event.attempt));
      paint(entry, event.status, event.timestamp);
      entry.tr.classList.remove("flash");
      void entry.tr.offsetWidth; // restart the highlight animation
      entry.tr.classList.add("flash");
    } else if (event.event === "submitted" && matches(filters, event)) {
      // A job newer than every row: it goes on top, as the newest-first order says.
      const tr = row({ ...event, created_at: event.timestamp, attempt_count: 0 });
      body.prepend(tr);
      status.textContent = "";
    }
  }

  async function load() {
    try {
      const page = await get(`/jobs${query({ ...filters, limit: pageSize, cursor })}`);
      for (const job of page.items) if (!rows.has(job.job_id)) body.append(row(job));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.textContent = rows.size ? "" : "No job matches.";
      if (!loaded) {
        loaded = true;
        for (const event of early.splice(0)) apply(event);
      }
    } catch (error) {
      clear(status, failure(error));
    }
  }

  more.addEventListener("click", load);
  const unsubscribe = context.stream.subscribe((event) => (loaded ? apply(event) : early.push(event)));
  load();
  return unsubscribe;
}

// ---------------------------------------------------------------------------------------- dead letters

export function renderDeadLetters(context, root) {
  if (!context.can("admin")) {
    clear(root, h("h1", {}, "Dead letter queue"), notice("Reading the dead letter queue needs a key with the admin scope.", "error"));
    return null;
  }
  const body = h("tbody", {});
  const all = h("input", { type: "checkbox", "aria-label": "select all" });
  const redriveSelected = h("button", { type: "button", class: "primary", disabled: true }, "Re-drive selected");
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const status = h("p", { class: "muted", "aria-live": "polite" }, "Loading…");
  const outcome = h("div", { "aria-live": "polite" });
  clear(
    root,
    h("h1", {}, "Dead letter queue"),
    h("p", { class: "muted" }, "Jobs that failed for good, newest first. A re-drive gives a job a fresh budget of attempts and puts its upstream_failed descendants back behind it."),
    h("div", { class: "toolbar" }, redriveSelected),
    outcome,
    status,
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "dlq" },
        h(
          "thead",
          {},
          h("tr", {}, h("th", {}, all), h("th", {}, "Job"), h("th", { class: "opt" }, "Type"), h("th", { class: "opt" }, "Failed"), h("th", {}, "Last error"), h("th", {}, "")),
        ),
        body,
      ),
    ),
    more,
  );
  let cursor = null;

  function selected() {
    return [...body.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
  }

  function refreshSelection() {
    const count = selected().length;
    redriveSelected.disabled = count === 0;
    redriveSelected.textContent = count ? `Re-drive selected (${count})` : "Re-drive selected";
  }

  async function redrive(ids) {
    const noun = ids.length === 1 ? `job ${ids[0]}` : `${ids.length} jobs`;
    const yes = await confirmAction(
      `Re-drive ${noun}?`,
      "Each goes back to pending with a fresh budget of attempts; jobs that failed because of it wait behind it again.",
      ids.length === 1 ? "Re-drive" : `Re-drive ${ids.length} jobs`,
    );
    if (!yes) return;
    const refused = [];
    for (const id of ids) {
      try {
        await call("POST", `/jobs/${encodeURIComponent(id)}/retry`);
        const tr = body.querySelector(`tr[data-job="${CSS.escape(id)}"]`);
        if (tr) tr.remove();
      } catch (error) {
        refused.push(`${id}: ${error.message}`);
      }
    }
    const done = ids.length - refused.length;
    clear(
      outcome,
      done ? notice(`Re-drove ${done} job${done === 1 ? "" : "s"}.`, "ok") : null,
      refused.length ? notice(`Not re-driven: ${refused.join("; ")}`, "error") : null,
    );
    all.checked = false;
    refreshSelection();
    if (!body.children.length) status.textContent = "The dead letter queue is empty.";
  }

  function row(job) {
    const box = h("input", { type: "checkbox", value: job.job_id, "aria-label": `select ${job.job_id}` });
    box.addEventListener("change", refreshSelection);
    const button = h("button", { type: "button" }, "Re-drive");
    button.addEventListener("click", () => redrive([job.job_id]));
    return h(
      "tr",
      { "data-job": job.job_id },
      h("td", {}, box),
      h("td", { class: "id" }, jobLink(job.job_id)),
      h("td", { class: "opt" }, job.type),
      h("td", { class: "opt" }, dateTime(job.finished_at)),
      h("td", { class: "error" }, h("span", { title: job.error || "" }, job.error || "–")),
      h("td", {}, button),
    );
  }

  async function load() {
    try {
      const page = await get(`/dlq${query({ limit: 50, cursor })}`);
      for (const job of page.items) if (!body.querySelector(`tr[data-job="${CSS.escape(job.job_id)}"]`)) body.append(row(job));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.textContent = body.children.length ? "" : "The dead letter queue is empty.";
    } catch (error) {
      clear(status, failure(error));
    }
  }

  all.addEventListener("change", () => {
    for (const box of body.querySelectorAll("input[type=checkbox]")) box.checked = all.checked;
    refreshSelection();
  });
  redriveSelected.addEventListener("click", () => redrive(selected()));
  more.addEventListener("click", load);
  // A job that fails for good while the page is open joins the list; nothing else changes it.
  const unsubscribe = context.stream.subscribe(async (event) => {
    if (event.status !== "failed" || body.querySelector(`tr[data-job="${CSS.escape(event.job_id)}"]`)) return;
    try {
      body.prepend(row(await get(`/jobs/${encodeURIComponent(event.job_id)}`)));
      status.textContent = "";
    } catch {
      // gone again (re-driven elsewhere, pruned): nothing to show
    }
  });
  load();
  return unsubscribe;
}
