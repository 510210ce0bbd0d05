// One job: every field, its attempts, the log (followed while the job is live), the scheduler's
// explanation in words for a waiting job, its dependency graph, and the cancel and re-drive actions.

import { call, get } from "./api.js";
import {
  TERMINAL,
  badge,
  between,
  clear,
  confirmAction,
  dateTime,
  duration,
  fromNow,
  h,
  json,
  notice,
  progressBar,
  s,
  throttle,
  time,
} from "./dom.js";

const SHOWN = new Set([
  "job_id",
  "type",
  "priority",
  "status",
  "payload",
  "resource_requirements",
  "depends_on",
  "retry_config",
  "timeout_seconds",
  "run_at",
  "next_run_at",
  "created_at",
  "started_at",
  "finished_at",
  "attempt_count",
  "error",
  "result",
  "position_in_queue",
  "attempts",
  "cancel_requested",
  "progress",
]);

function field(label, value) {
  return [h("dt", {}, label), h("dd", {}, value === null || value === undefined || value === "" ? "–" : value)];
}

function fields(job) {
  const resources = job.resource_requirements || {};
  const retry = job.retry_config || {};
  const list = [
    field("Type", job.type),
    field("Priority", job.priority),
    field("Status", badge(job.status)),
    field("Created", dateTime(job.created_at)),
    field("Started", dateTime(job.started_at)),
    field("Finished", dateTime(job.finished_at)),
    field("Run at", job.run_at ? dateTime(job.run_at) : null),
    field("Next run at", job.next_run_at ? [dateTime(job.next_run_at), ` (${fromNow(job.next_run_at)})`] : null),
    field("Position in queue", job.position_in_queue ?? null),
    field("Resources", `${resources.cpu_units} CPU units, ${resources.memory_mb} MB`),
    field("Timeout", job.timeout_seconds ? duration(job.timeout_seconds) : "none"),
    field(
      "Retries",
      `${job.attempt_count} attempt${job.attempt_count === 1 ? "" : "s"} so far, at most ${retry.max_attempts}; backoff ${retry.initial_delay_seconds} s × ${retry.backoff_multiplier} up to ${retry.max_delay_seconds} s, jitter ${retry.jitter}`,
    ),
    field("Depends on", job.depends_on && job.depends_on.length ? job.depends_on.join(", ") : "nothing"),
    field("Error", job.error ? h("span", { class: "error-text" }, job.error) : null),
  ];
  // Fields a newer service adds (schedule_id, node, ...) are shown as they come.
  for (const [name, value] of Object.entries(job)) {
    if (SHOWN.has(name)) continue;
    list.push(field(name.replaceAll("_", " "), typeof value === "object" && value !== null ? json(value) : String(value)));
  }
  return h("dl", { class: "fields" }, list);
}

function attemptsTable(job) {
  if (!job.attempts || !job.attempts.length) return notice("No attempt yet.");
  const withNode = job.attempts.some((a) => a.node);
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { class: "attempts" },
      h(
        "thead",
        {},
        h("tr", {}, h("th", {}, "#"), h("th", {}, "Outcome"), h("th", { class: "opt" }, "Started"), h("th", {}, "Duration"), h("th", { class: "opt" }, "Worker"), withNode ? h("th", {}, "Node") : null, h("th", {}, "Error")),
      ),
      h(
        "tbody",
        {},
        job.attempts.map((a) =>
          h(
            "tr",
            { "data-attempt": String(a.attempt) },
            h("td", { class: "num" }, String(a.attempt)),
            h("td", {}, a.outcome ? badge(a.outcome) : badge("running")),
            h("td", { class: "opt" }, time(a.started_at)),
            h("td", { class: "num" }, duration(between(a.started_at, a.finished_at))),
            h("td", { class: "opt" }, a.worker_pid ? `pid ${a.worker_pid}` : "–"),
            withNode ? h("td", {}, a.node || "–") : null,
            h("td", { class: "error" }, a.error || ""),
          ),
        ),
      ),
    ),
  );
}

// The scheduler's explanation, in sentences. Its own `reason` always comes first: it is the
// authoritative one, and it covers conditions this console does not know of yet.
export function explainWords(x) {
  const lines = [];
  if (x.reason) lines.push(x.reason.charAt(0).toUpperCase() + x.reason.slice(1) + ".");
  if (x.status === "pending" && typeof x.position_in_queue === "number") {
    lines.push(x.position_in_queue === 0 ? "It is next in line." : `${x.position_in_queue} job${x.position_in_queue === 1 ? " is" : "s are"} ahead of it in line.`);
  }
  if (x.waiting_on && x.waiting_on.length) lines.push(`It waits for ${x.waiting_on.join(", ")} to succeed.`);
  if (x.shortfall && (x.shortfall.cpu_units > 0 || x.shortfall.memory_mb > 0)) {
    lines.push(
      `It needs ${x.needs.cpu_units} CPU units and ${x.needs.memory_mb} MB; ${x.free.cpu_units} units and ${x.free.memory_mb} MB are free now.`,
    );
  }
  if (x.reservation && x.reservation.until) {
    lines.push(`Resources are held for ${x.reservation.job_id}, expected to start by ${new Date(x.reservation.until).toLocaleTimeString([], { hour12: false })} (${fromNow(x.reservation.until)}).`);
  }
  if (x.next_run_at) lines.push(`Expected to become ready at ${new Date(x.next_run_at).toLocaleTimeString([], { hour12: false })} (${fromNow(x.next_run_at)}).`);
  if (typeof x.waiting_seconds === "number") {
    const priority = typeof x.effective_priority === "number" ? `; its effective priority has aged to ${x.effective_priority}` : "";
    lines.push(`Waiting for ${duration(x.waiting_seconds)}${priority}.`);
  }
  if (typeof x.attempts_so_far === "number" && x.attempts_so_far > 0) lines.push(`${x.attempts_so_far} attempt${x.attempts_so_far === 1 ? "" : "s"} so far.`);
  return lines;
}

// ------------------------------------------------------------------------------------------------ graph

const NODE_W = 180;
const NODE_H = 34;
const GAP = 12;
const COLUMN_GAP = 70;
const GUTTER = 44; // the narrow layout's edges curve out into a gutter on each side

function label(text, limit = 22) {
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

function nodeShape(node, at, self) {
  const shape = [
    s("rect", { x: at.x, y: at.y, width: NODE_W, height: NODE_H, rx: 6 }),
    s("text", { x: at.x + 8, y: at.y + 14, class: "node-id" }, label(node.job_id)),
    s("text", { x: at.x + 8, y: at.y + 28, class: "node-meta" }, label(`${node.status.replace("_", " ")} · ${node.type}`, 26)),
    s("title", {}, `${node.job_id} (${node.type}): ${node.status}`),
  ];
  if (self) return s("g", { class: `node self st-${node.status}`, "data-node": node.job_id }, shape);
  return s("a", { href: `#/jobs/${encodeURIComponent(node.job_id)}`, class: `node st-${node.status}`, "data-node": node.job_id }, shape);
}

// Parents, the job and its children as three columns, left to right; below `narrow` px of room, as
// one column, top to bottom (parents' edges curve through the right gutter, children's through the
// left), so that a phone needs no sideways scrolling.
export function graphSvg(graph, narrow = false) {
  const self = { job_id: graph.job_id, type: graph.type, status: graph.status };
  const tiers = [graph.parents, [self], graph.children];
  const place = new Map();
  let width;
  let height;
  if (narrow) {
    let y = GAP;
    tiers.forEach((tier, i) => {
      for (const node of tier) {
        place.set(`${i}:${node.job_id}`, { x: GUTTER, y });
        y += NODE_H + GAP;
      }
      if (tier.length) y += GAP;
    });
    width = NODE_W + 2 * GUTTER;
    height = y;
  } else {
    const tallest = Math.max(...tiers.map((c) => c.length), 1);
    height = tallest * (NODE_H + GAP) + GAP;
    let column = 0; // an empty side takes no column
    tiers.forEach((tier, i) => {
      const top = (height - tier.length * (NODE_H + GAP) + GAP) / 2;
      const x = column * (NODE_W + COLUMN_GAP);
      tier.forEach((node, j) => place.set(`${i}:${node.job_id}`, { x, y: top + j * (NODE_H + GAP) }));
      if (tier.length) column += 1;
    });
    width = column * NODE_W + (column - 1) * COLUMN_GAP;
  }
  const center = place.get(`1:${graph.job_id}`);
  const edge = (d) => s("path", { class: "edge", d, "marker-end": "url(#arrow)" });
  const curve = (from, to) => {
    const y1 = from.y + NODE_H / 2;
    const y2 = to.y + NODE_H / 2;
    if (!narrow) {
      const x1 = from.x + NODE_W;
      const x2 = to.x - 4;
      const mid = (x1 + x2) / 2;
      return edge(`M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`);
    }
    // parent -> job through the right gutter, job -> child through the left one
    const right = from !== center;
    const x = right ? from.x + NODE_W : from.x;
    const bend = right ? x + GUTTER - 6 : x - GUTTER + 6;
    const end = right ? x + 4 : x - 4;
    return edge(`M${x},${y1} C${bend},${y1} ${bend},${y2} ${end},${y2}`);
  };
  const edges = [
    ...graph.parents.map((p) => curve(place.get(`0:${p.job_id}`), center)),
    ...graph.children.map((c) => curve(center, place.get(`2:${c.job_id}`))),
  ];
  const nodes = tiers.flatMap((tier, i) => tier.map((node) => nodeShape(node, place.get(`${i}:${node.job_id}`), i === 1)));
  const drawing = s(
    "svg",
    { class: `graph${narrow ? " narrow" : ""}`, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `dependency graph of ${graph.job_id}` },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }))),
    edges,
    nodes,
  );
  // Shrinks with its card but never grows past its own size (text stays at its drawn size). Set
  // through the CSSOM, which the CSP allows; a style attribute it would refuse.
  drawing.style.maxWidth = `${width}px`;
  return drawing;
}

// ------------------------------------------------------------------------------------------------- page

export function renderJob(context, root, jobId) {
  const title = h("h1", { class: "job-title" }, jobId);
  const actions = h("div", { class: "actions" });
  const message = h("div", { "aria-live": "polite" });
  const summary = h("section", { class: "card", "aria-labelledby": "f-title" });
  const explain = h("section", { class: "card", "aria-labelledby": "x-title", hidden: true });
  const attempts = h("section", { class: "card wide", "aria-labelledby": "a-title" });
  const graph = h("section", { class: "card wide", "aria-labelledby": "g-title" });
  const logLines = h("tbody", {});
  const logBox = h("div", { class: "log scroll" }, h("table", { class: "log-table" }, logLines));
  const logState = h("span", { class: "muted" });
  const logs = h("section", { class: "card wide", "aria-labelledby": "l-title" }, h("h2", { id: "l-title" }, "Log ", logState), logBox);
  const payload = h("section", { class: "card", "aria-labelledby": "p-title" });
  clear(root, h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / "), h("div", { class: "job-head" }, title, actions), message, h("div", { class: "grid" }, summary, explain, payload, attempts, graph, logs));

  let job = null;
  let stopped = false;
  let lastLog = 0;
  let logTimer = null;
  let neighbours = new Set();
  const narrowGraph = () => graph.clientWidth < 620;

  function renderActions() {
    const buttons = [];
    if (context.can("admin") && !TERMINAL.has(job.status)) {
      const cancel = h("button", { type: "button", class: "danger" }, "Cancel");
      cancel.addEventListener("click", async () => {
        const running = job.status === "running";
        const yes = await confirmAction(
          `Cancel ${jobId}?`,
          running ? "The running attempt is stopped (SIGTERM, then SIGKILL)." : "It will never run; jobs that depend on it fail as upstream_failed.",
          "Cancel job",
        );
        if (!yes) return;
        try {
          const answer = await call("PATCH", `/jobs/${encodeURIComponent(jobId)}/cancel`);
          clear(message, notice(answer.cancel_requested ? "Cancel requested: the worker is being stopped." : "Cancelled.", "ok"));
          show(answer);
        } catch (error) {
          clear(message, notice(`Not cancelled: ${error.message}`, "error"));
        }
      });
      buttons.push(cancel);
    }
    if (context.can("admin") && job.status === "failed") {
      const redrive = h("button", { type: "button", class: "primary" }, "Re-drive");
      redrive.addEventListener("click", async () => {
        const yes = await confirmAction(`Re-drive ${jobId}?`, "It goes back to pending with a fresh budget of attempts; jobs that failed because of it wait behind it again.", "Re-drive");
        if (!yes) return;
        try {
          show(await call("POST", `/jobs/${encodeURIComponent(jobId)}/retry`));
          clear(message, notice("Re-driven.", "ok"));
          followLogs();
        } catch (error) {
          clear(message, notice(`Not re-driven: ${error.message}`, "error"));
        }
      });
      buttons.push(redrive);
    }
    clear(actions, buttons);
  }

  function show(next) {
    job = next;
    clear(title, job.job_id, " ", badge(job.status), job.status === "running" ? progressBar(job.progress) : null);
    renderActions();
    clear(summary, h("h2", { id: "f-title" }, "Job"), fields(job));
    clear(attempts, h("h2", { id: "a-title" }, "Attempts"), attemptsTable(job));
    clear(
      payload,
      h("h2", { id: "p-title" }, "Payload and result"),
      h("h3", {}, "Payload"),
      json(job.payload),
      h("h3", {}, "Result"),
      job.result === null || job.result === undefined ? notice("No result.") : json(job.result),
    );
    if (TERMINAL.has(job.status)) explain.hidden = true;
  }

  async function loadJob() {
    try {
      show(await get(`/jobs/${encodeURIComponent(jobId)}`));
      if (!TERMINAL.has(job.status)) loadExplain();
    } catch (error) {
      if (!job) clear(root, h("h1", {}, jobId), notice(error.message, "error"));
    }
  }

  async function loadExplain() {
    try {
      const answer = await get(`/jobs/${encodeURIComponent(jobId)}/explain`);
      if (stopped || TERMINAL.has(answer.status) || answer.status === "running") {
        explain.hidden = true;
        return;
      }
      explain.hidden = false;
      clear(explain, h("h2", { id: "x-title" }, "Why it is waiting"), h("ul", { class: "explain" }, explainWords(answer).map((line) => h("li", {}, line))));
    } catch {
      explain.hidden = true;
    }
  }

  let lastGraph = null;

  async function loadGraph() {
    try {
      const answer = await get(`/jobs/${encodeURIComponent(jobId)}/graph`);
      if (stopped) return;
      lastGraph = answer;
      drawGraph(answer);
    } catch (error) {
      clear(graph, h("h2", { id: "g-title" }, "Dependencies"), notice(error.message, "error"));
    }
  }

  function drawGraph(answer) {
    neighbours = new Set([...answer.parents, ...answer.children].map((n) => n.job_id));
    const note = [];
    if (answer.more_parents) note.push("more parents than shown");
    if (answer.more_children) note.push("more children than shown");
    clear(
      graph,
      h("h2", { id: "g-title" }, "Dependencies"),
      answer.parents.length || answer.children.length ? graphSvg(answer, narrowGraph()) : notice("No parents and no children."),
      note.length ? notice(`Cut: ${note.join(", ")}.`) : null,
    );
  }

  async function loadLogs() {
    try {
      for (;;) {
        const lines = await get(`/jobs/${encodeURIComponent(jobId)}/logs?after=${lastLog}&limit=500`);
        if (stopped) return;
        const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
        for (const line of lines) {
          if (line.id <= lastLog) continue; // two reads may overlap (an event and the timer)
          lastLog = line.id;
          logLines.append(
            h(
              "tr",
              { class: `lvl-${line.level}`, "data-log": String(line.id) },
              h("td", { class: "ts" }, time(line.timestamp)),
              h("td", { class: "ev" }, line.event),
              h("td", { class: "msg" }, line.attempt ? `[${line.attempt}] ` : "", line.message),
            ),
          );
        }
        if (atBottom && lines.length) logBox.scrollTop = logBox.scrollHeight;
        if (lines.length < 500) break;
      }
    } catch (error) {
      logState.textContent = `(${error.message})`;
    }
  }

  // While the job is live its handler may log at any moment, and handler lines make no stream event:
  // the log is read every second until the job ends, then once more.
  function followLogs() {
    clearTimeout(logTimer);
    const tick = async () => {
      await loadLogs();
      if (stopped) return;
      const following = job && !TERMINAL.has(job.status);
      logState.textContent = following ? "(following)" : "";
      if (following) logTimer = setTimeout(tick, 1000);
    };
    tick();
  }

  const jobSoon = throttle(loadJob, 300);
  const graphSoon = throttle(loadGraph, 500);
  const unsubscribe = context.stream.subscribe((event) => {
    if (event.job_id === jobId) {
      if (event.event === "progress" && event.progress && job) {
        show({ ...job, progress: event.progress });
        return;
      }
      jobSoon();
      graphSoon();
      followLogs();
    } else if (neighbours.has(event.job_id)) {
      graphSoon();
    }
  });
  // A turned phone or a resized window redraws the graph in the layout that fits.
  let wasNarrow = null;
  const resized = new ResizeObserver(() => {
    if (graph.clientWidth && narrowGraph() !== wasNarrow && wasNarrow !== null && lastGraph) drawGraph(lastGraph);
    wasNarrow = narrowGraph();
  });
  resized.observe(graph);
  loadJob().then(() => followLogs());
  loadGraph();
  return () => {
    stopped = true;
    unsubscribe();
    resized.disconnect();
    clearTimeout(logTimer);
  };
}
