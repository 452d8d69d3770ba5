// The operator page: who is online, is the sweep running, are the workers alive, and how
// the last hour or day went. Live presence comes from the stream (through
// presence-client.js); the counts, sweeps and workers from /api/admin/overview/ every few
// seconds (the tiles say when they were counted); the charts from /api/admin/history/,
// sampled by the worker at every sweep tick. The token stays in memory.
import * as presence from "/static/presence-client.js";
import { drawChart } from "/admin/charts.js";

const PAGE_SIZE = 50;
const OVERVIEW_EVERY_MS = 2000;
const PAGE_REFRESH_EVERY_MS = 5000;
const SEARCH_PAUSE_MS = 250;
const HISTORY_EVERY_MS = 5000;

const $ = (id) => document.getElementById(id);
let token = null;
let cursors = [null]; // the cursor of each page seen, for "Previous"
let nextCursor = null;
let subscription = null;
let watchedIds = "";
let timers = [];
let historyRange = "hour";

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: {
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...(body ? { "Content-Type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    const error = new Error(json?.error?.message ?? `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return json;
}

const SYMBOL = { online: "●", away: "◐", dnd: "⊘", offline: "○" };
const LABEL = { online: "online", away: "away", dnd: "do not disturb", offline: "offline" };

function presenceCell(status) {
  const span = document.createElement("span");
  span.className = `presence ${status.presence}`;
  // A symbol and a word: states read without colour too.
  span.textContent = `${SYMBOL[status.presence] ?? "?"} ${LABEL[status.presence] ?? status.presence}`;
  span.dataset.presence = status.presence;
  return span;
}

function ago(time) {
  if (!time) return "never";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(time)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(time).toLocaleString();
}

function renderRow(row, user) {
  row.replaceChildren();
  const cells = [String(user.id), user.username, null, [user.status_emoji, user.status_text].filter(Boolean).join(" "), ago(user.last_seen)];
  cells.forEach((text, n) => {
    const td = document.createElement("td");
    if (n === 2) td.append(presenceCell(user));
    else td.textContent = text;
    row.append(td);
  });
  row.dataset.userId = user.id;
  row.dataset.presence = user.presence;
}

const rows = new Map(); // user id -> { row, user }

async function loadPage() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const presenceFilter = $("presence-filter").value;
  const search = $("search").value.trim();
  if (presenceFilter) query.set("presence", presenceFilter);
  if (search) query.set("search", search);
  const cursor = cursors[cursors.length - 1];
  if (cursor) query.set("cursor", cursor);
  const page = await api("GET", `/api/users/all-users/?${query}`);
  const body = $("users").tBodies[0];
  body.replaceChildren();
  rows.clear();
  for (const user of page.users) {
    const row = document.createElement("tr");
    renderRow(row, user);
    row.addEventListener("click", () => showHistory(user.id, user.username));
    body.append(row);
    rows.set(user.id, { row, user });
  }
  if (page.users.length === 0) {
    const row = document.createElement("tr");
    row.innerHTML = '<td colspan="5" class="muted">No users match.</td>';
    body.append(row);
  }
  nextCursor = page.next ?? null;
  $("next").disabled = !nextCursor;
  $("prev").disabled = cursors.length <= 1;
  $("page-info").textContent = `page ${cursors.length}`;
  watch([...rows.keys()]);
}

function watch(ids) {
  const key = ids.join(",");
  if (key === watchedIds) return;
  watchedIds = key;
  if (subscription) subscription.close();
  subscription = null;
  if (ids.length === 0) return;
  subscription = presence.subscribe(ids, (changed) => {
    for (const status of changed) {
      const entry = rows.get(status.id);
      if (!entry) continue;
      // The stream carries what others see; keep the admin's own fields (the name).
      entry.user = { ...entry.user, ...status };
      renderRow(entry.row, entry.user);
    }
  });
}

async function showHistory(id, username) {
  const history = await api("GET", `/api/users/${id}/presence-history/?limit=20`);
  $("history-name").textContent = username;
  const list = $("history-list");
  list.replaceChildren();
  for (const event of history.events) {
    const item = document.createElement("li");
    item.textContent = `${new Date(event.at).toLocaleTimeString()}: ${event.from} → ${event.to} (${event.reason.replace("_", " ")})`;
    list.append(item);
  }
  if (history.events.length === 0) list.innerHTML = '<li class="muted">No transitions yet.</li>';
  $("history").hidden = false;
}

async function loadOverview() {
  const overview = await api("GET", "/api/admin/overview/");
  for (const state of ["online", "away", "dnd", "offline"]) {
    $(`count-${state}`).textContent = overview.presence[state].toLocaleString();
  }
  $("counted-at").textContent = `as of ${new Date(overview.counted_at).toLocaleTimeString()}`;
  $("counted-at").dataset.countedAt = overview.counted_at;
  const sweeps = $("sweeps").tBodies[0];
  sweeps.replaceChildren();
  for (const sweep of overview.sweeps) {
    const row = document.createElement("tr");
    const took = sweep.finished_at ? `${Math.max(0, Date.parse(sweep.finished_at) - Date.parse(sweep.started_at))} ms` : "running";
    for (const text of [new Date(sweep.tick_at).toLocaleTimeString(), took, String(sweep.users_marked_offline ?? "–"), sweep.swept_by ?? "–"]) {
      const td = document.createElement("td");
      td.textContent = text;
      row.append(td);
    }
    sweeps.append(row);
  }
  if (overview.sweeps.length === 0) sweeps.innerHTML = '<tr><td colspan="4" class="muted">No sweep has run yet.</td></tr>';
  const warning = $("sweep-warning");
  warning.hidden = !overview.sweep_warning;
  warning.textContent = overview.sweep_warning ? `⚠ ${overview.sweep_warning}` : "";
  const workers = $("workers");
  workers.replaceChildren();
  for (const worker of overview.workers) {
    const item = document.createElement("li");
    item.dataset.name = worker.name;
    const name = document.createElement("strong");
    name.textContent = `● ${worker.name}`;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `${worker.host} · up since ${new Date(worker.started_at).toLocaleTimeString()} · ${worker.jobs_done.toLocaleString()} jobs done`;
    item.append(name, meta);
    workers.append(item);
  }
  if (overview.workers.length === 0) workers.innerHTML = '<li class="error">⚠ No worker has reported in the last 30 s.</li>';
  $("queue-pending").textContent = overview.queue.pending;
  $("queue-failed").textContent = overview.queue.failed;
}

const REASONS = ["login", "logout", "heartbeat", "activity", "idle", "manual", "expiry", "sweep", "status_text"];

async function loadHistory() {
  const range = historyRange;
  const history = await api("GET", `/api/admin/history/?range=${range}`);
  if (range !== historyRange) return; // the range changed while this was asked
  const to = Date.now();
  const from = to - (range === "day" ? 86400_000 : 3600_000);
  const span = range === "day" ? "the last day" : "the last hour";
  const perMinute = 60 / history.bucket_secs;
  const at = (point) => Date.parse(point.at);
  const line = (label, className, value) => ({
    label,
    className,
    points: history.points.filter((p) => value(p) !== null).map((p) => [at(p), value(p)]),
  });
  const common = { span, from, to };
  drawChart($("chart-presence"), {
    ...common,
    title: "Users connected",
    unit: "users, by presence",
    series: [
      line("online", "online", (p) => p.online),
      line("away", "away", (p) => p.away),
      line("do not disturb", "dnd", (p) => p.dnd),
    ],
  });
  // Only the reasons that happened in the range get a line (and a legend entry).
  const reasons = REASONS.filter((reason) => history.points.some((p) => p.transitions[reason] > 0));
  drawChart($("chart-transitions"), {
    ...common,
    title: "Transitions",
    unit: "per minute, by reason",
    series: reasons.map((reason, n) => line(reason.replace("_", " "), `r${REASONS.indexOf(reason)}`, (p) => p.transitions[reason] * perMinute)),
  });
  drawChart($("chart-sweep-duration"), {
    ...common,
    title: "Sweep duration",
    unit: "ms, slowest per point",
    series: [line("sweep", "accent", (p) => p.sweep_ms)],
  });
  drawChart($("chart-swept"), {
    ...common,
    title: "Users swept",
    unit: "taken offline per tick",
    series: [line("swept", "dnd", (p) => p.swept / p.samples)],
  });
  drawChart($("chart-publish-lag"), {
    ...common,
    title: "Event pipeline lag",
    unit: "s, oldest unpublished transition",
    series: [line("lag", "away", (p) => p.publish_lag_ms / 1000)],
  });
  drawChart($("chart-streams"), {
    ...common,
    title: "Streams open",
    unit: "on all API replicas",
    series: [line("streams", "online", (p) => p.streams_open)],
  });
}

function every(ms, task) {
  const run = () => task().catch((error) => {
    if (error.status === 401) signOut();
  });
  run();
  timers.push(setInterval(run, ms));
}

async function signIn(event) {
  event.preventDefault();
  $("login-error").hidden = true;
  try {
    const answer = await api("POST", "/api/users/login/", {
      username: $("username").value,
      password: $("password").value,
    });
    $("password").value = "";
    token = answer.token;
    $("login").hidden = true;
    $("who").hidden = false;
    $("who-name").textContent = answer.user.username;
    if (!answer.user.is_admin) {
      // No data for non-admins; their session is ended at once.
      $("denied").hidden = false;
      await api("POST", "/api/users/logout/");
      token = null;
      return;
    }
    presence.start({ baseUrl: "", token });
    $("dashboard").hidden = false;
    every(OVERVIEW_EVERY_MS, loadOverview);
    every(PAGE_REFRESH_EVERY_MS, loadPage);
    every(HISTORY_EVERY_MS, loadHistory);
  } catch (error) {
    $("login-error").textContent = error.status === 401 ? "Wrong username or password." : error.message;
    $("login-error").hidden = false;
  }
}

async function signOut() {
  timers.forEach(clearInterval);
  timers = [];
  watchedIds = "";
  subscription = null;
  if (token) await presence.logout();
  token = null;
  $("dashboard").hidden = true;
  $("denied").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
}

$("login-form").addEventListener("submit", signIn);
$("logout").addEventListener("click", signOut);
$("filters").addEventListener("submit", (event) => event.preventDefault());
// Typing a search reloads the page (and its stream) once the typing pauses, not per key.
let reloadTimer = null;
for (const id of ["search", "presence-filter"]) {
  $(id).addEventListener("input", () => {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => {
      cursors = [null];
      loadPage().catch(() => {});
    }, SEARCH_PAUSE_MS);
  });
}
for (const button of document.querySelectorAll(".range button")) {
  button.addEventListener("click", () => {
    historyRange = button.dataset.range;
    for (const other of document.querySelectorAll(".range button")) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    loadHistory().catch(() => {});
  });
}
$("next").addEventListener("click", () => {
  if (!nextCursor) return;
  cursors.push(nextCursor);
  loadPage().catch(() => {});
});
$("prev").addEventListener("click", () => {
  if (cursors.length <= 1) return;
  cursors.pop();
  loadPage().catch(() => {});
});
