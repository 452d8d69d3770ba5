// presence-client.js: the chat frontend's presence, done right once.
//
//   import * as presence from "/static/presence-client.js";
//   presence.start({ baseUrl: "", token });      // heartbeats at the server's interval
//   presence.subscribe([1, 2, 3], (changed, all) => render(all));
//   await presence.setStatus({ availability: "dnd", until: null, text: "Focus" });
//   await presence.logout();                     // ends the session, stops everything
//
// The token lives in this module's memory only, is sent only in Authorization headers,
// and is never logged. A stream is opened with a single-use ticket (EventSource cannot
// send headers); after a drop it reconnects with a fresh ticket and the last event id,
// so it gets exactly what it missed, retrying with backoff and jitter for as long as the
// outage lasts. When the session has ended (a 401 `unauthenticated`) everything stops
// and `onSessionEnd` is called: log in again. No dependencies; served by the API it
// talks to, with TypeScript declarations beside it (presence-client.d.ts).

let config = null; // { baseUrl, token, onSessionEnd }
let heartbeat = null; // { timer, intervalMs, awayAfterMs }
let lastUse = Date.now();
const subscriptions = new Set();

const USE_EVENTS = ["pointerdown", "pointermove", "keydown", "wheel", "touchstart", "focus"];

function noteUse() {
  lastUse = Date.now();
}

/** Whether the user is really using the page: visible, and touched within the away timeout. */
export function isActive() {
  if (typeof document !== "undefined" && document.visibilityState === "hidden") return false;
  const awayAfterMs = heartbeat ? heartbeat.awayAfterMs : 300_000;
  return Date.now() - lastUse < awayAfterMs;
}

async function call(method, path, body) {
  if (!config) throw new Error("presence-client: call start() first");
  const response = await fetch(`${config.baseUrl}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${config.token}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error(json?.error?.message ?? `HTTP ${response.status}`);
    error.status = response.status;
    error.code = json?.error?.code ?? null;
    error.field = json?.error?.field ?? null;
    if (error.code === "unauthenticated") sessionEnded();
    throw error;
  }
  return json;
}

function sessionEnded() {
  const onSessionEnd = config?.onSessionEnd;
  stop();
  config = null;
  if (onSessionEnd) onSessionEnd();
}

async function beat() {
  if (!heartbeat) return;
  let next = heartbeat.intervalMs;
  try {
    const answer = await call("POST", "/api/users/heartbeat/", { active: isActive() });
    // The server's settings, never constants of this client.
    heartbeat.intervalMs = answer.heartbeat_interval_ms;
    heartbeat.awayAfterMs = answer.away_after_secs * 1000;
    next = heartbeat.intervalMs;
  } catch (error) {
    if (!heartbeat) return; // stopped: the session ended
    next = Math.min(heartbeat.intervalMs, 5000);
  }
  if (heartbeat) heartbeat.timer = setTimeout(beat, next);
}

function onVisibility() {
  // Coming back to the page is use, and worth telling at once.
  if (document.visibilityState === "visible") noteUse();
  if (heartbeat) {
    clearTimeout(heartbeat.timer);
    beat();
  }
}

/** Starts heartbeats for the session of `token` (the first at once). */
export function start({ baseUrl = "", token, onSessionEnd }) {
  if (!token) throw new Error("presence-client: start() needs a token");
  stop();
  config = { baseUrl: baseUrl.replace(/\/$/, ""), token, onSessionEnd };
  heartbeat = { timer: null, intervalMs: 30_000, awayAfterMs: 300_000 };
  noteUse();
  if (typeof document !== "undefined") {
    USE_EVENTS.forEach((name) => window.addEventListener(name, noteUse, { passive: true }));
    document.addEventListener("visibilitychange", onVisibility);
  }
  beat();
}

/** Stops heartbeats and closes every stream (the session itself stays). */
export function stop() {
  if (heartbeat) clearTimeout(heartbeat.timer);
  heartbeat = null;
  if (typeof document !== "undefined") {
    USE_EVENTS.forEach((name) => window.removeEventListener(name, noteUse));
    document.removeEventListener("visibilitychange", onVisibility);
  }
  subscriptions.forEach((subscription) => subscription.close());
  subscriptions.clear();
}

/** Logs this session out and stops everything; the token is forgotten. */
export async function logout() {
  const current = config;
  stop();
  config = null;
  if (current) {
    await fetch(`${current.baseUrl}/api/users/logout/`, {
      method: "POST",
      headers: { Authorization: `Bearer ${current.token}` },
    });
  }
}

/** Sets the caller's manual and custom status: any of availability, until, text, emoji,
 * text_expires_at (left out: kept). Resolves to the caller's status object. */
export function setStatus(fields) {
  return call("PUT", "/api/users/me/status/", fields);
}

/**
 * Watches `ids` (or every user with `{ all: true }`, for admins): `onChange(changed, all,
 * kind)` gets the statuses that changed, the map of every watched user's status, and
 * `"snapshot"` or `"presence"`. Returns `{ statuses, close() }`.
 */
export function subscribe(ids, onChange, { all = false } = {}) {
  const statuses = new Map();
  let source = null;
  let lastEventId = null;
  let closed = false;
  let retryTimer = null;
  let failures = 0; // reconnects since the last event received
  const subscription = {
    statuses,
    get lastEventId() {
      return lastEventId;
    },
    close() {
      closed = true;
      clearTimeout(retryTimer);
      if (source) source.close();
      subscriptions.delete(subscription);
    },
  };
  subscriptions.add(subscription);

  const apply = (kind, list, replace) => {
    if (replace) statuses.clear();
    list.forEach((status) => statuses.set(status.id, status));
    onChange(list, statuses, kind);
  };

  async function open() {
    if (closed) return;
    try {
      const { ticket } = await call("POST", "/api/presence/tickets/");
      const query = new URLSearchParams(all ? { scope: "all" } : { ids: ids.join(",") });
      query.set("ticket", ticket);
      if (lastEventId !== null) query.set("last_event_id", String(lastEventId));
      source = new EventSource(`${config.baseUrl}/api/presence/stream/?${query}`);
    } catch (error) {
      // The session has ended (`unauthenticated`: everything stopped), or the API is out
      // of reach: try again later, for as long as it takes.
      return reconnect();
    }
    const remember = (event) => {
      failures = 0;
      if (event.lastEventId) lastEventId = Number(event.lastEventId);
    };
    source.addEventListener("snapshot", (event) => {
      remember(event);
      apply("snapshot", JSON.parse(event.data).users, true);
    });
    source.addEventListener("presence", (event) => {
      remember(event);
      apply("presence", JSON.parse(event.data).changes, false);
    });
    // `resync` is followed by a snapshot, which replaces the map.
    source.addEventListener("error", () => {
      // A ticket is good once: the browser's own reconnect would be refused, so this
      // client reconnects itself with a new ticket and the last event id.
      source.close();
      reconnect();
    });
  }

  // Backoff with full jitter: 2 s, doubling per failure up to 30 s, each a random share
  // of it, so clients dropped together do not come back together.
  function reconnect() {
    if (closed) return;
    const ceiling = Math.min(30_000, 2000 * 2 ** Math.min(failures, 4));
    failures += 1;
    retryTimer = setTimeout(open, 1000 + Math.random() * ceiling);
  }

  open();
  return subscription;
}
