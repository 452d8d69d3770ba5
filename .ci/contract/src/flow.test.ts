// Every operation of the document, called through the typed client against the live API,
// every answer (errors included) validated against its documented schema by the
// middleware. The last test proves every operation was reached.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { API, checkAnswer, checkValue, checked, component, operations, reached } from "./contract.js";
import { type Api, ApiError, afterRefusal, allUsers, api, changesSince, label, signUp } from "./client.js";

const PASSWORD = "correct horse battery";
const run = `${process.pid % 100000}`;

function client(token?: string): Api {
  const typed = api(API, token);
  typed.use(checked);
  return typed;
}

async function adminToken(): Promise<string> {
  const login = await client().POST("/api/users/login/", {
    body: { username: process.env.ADMIN_USERNAME ?? "contract", password: process.env.ADMIN_PASSWORD ?? PASSWORD },
  });
  if (login.error) throw new ApiError(login.response.status, login.error);
  return login.data.token;
}

test("operations: health, readiness, the document", async () => {
  const anonymous = client();
  const health = await anonymous.GET("/healthz");
  assert.equal(health.data?.status, "ok");
  const ready = await anonymous.GET("/readyz");
  assert.equal(ready.data?.checks.postgres, "ok");
  const doc = await anonymous.GET("/api/openapi.json");
  assert.equal(doc.data?.openapi, "3.1.0");
});

test("accounts: register, log in, refusals", async () => {
  const anonymous = client();
  const { token, me } = await signUp(anonymous, `ada${run}`, PASSWORD);
  assert.equal(me.availability, "auto");
  assert.equal(me.presence, "online");
  assert.equal(me.status_expires_at, null);
  const taken = await anonymous.POST("/api/users/register/", { body: { username: `ada${run}`, password: PASSWORD } });
  assert.equal(taken.error?.error.code, "username_taken");
  const wrong = await anonymous.POST("/api/users/login/", { body: { username: `ada${run}`, password: "not the password" } });
  assert.ok(wrong.error);
  assert.equal(afterRefusal(wrong.error), "log in");
  const invalid = await anonymous.POST("/api/users/register/", { body: { username: "x", password: PASSWORD } });
  assert.equal(invalid.error?.error.code, "invalid_field");
  assert.equal(invalid.error?.error.field, "username");
  const unauthenticated = await anonymous.GET("/api/users/me/");
  assert.equal(unauthenticated.error?.error.code, "unauthenticated");
  const out = await client(token).POST("/api/users/logout/");
  assert.equal(out.response.status, 204);
});

test("heartbeats, with and without a body", async () => {
  const { token } = await signUp(client(), `bea${run}`, PASSWORD);
  const user = client(token);
  const bare = await user.POST("/api/users/heartbeat/");
  assert.equal(bare.data?.online_status, "online");
  const idle = await user.POST("/api/users/heartbeat/", { body: { active: false } });
  assert.ok(idle.data);
  assert.ok(idle.data.heartbeat_interval_ms > 0);
  // A body the types would not let through, sent as another client might.
  const mistyped = await fetch(`${API}/api/users/heartbeat/`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ active: "yes" }),
  });
  await checkAnswer("POST", "/api/users/heartbeat/", mistyped);
  assert.equal(mistyped.status, 400);
});

test("statuses: own, one, many, counts, history", async () => {
  const { token, me } = await signUp(client(), `cy${run}`, PASSWORD);
  const { token: otherToken, me: other } = await signUp(client(), `dee${run}`, PASSWORD);
  const user = client(token);
  const until = new Date(Date.now() + 3_600_000).toISOString();
  const set = await user.PUT("/api/users/me/status/", {
    body: { availability: "dnd", until, text: "focus", emoji: "🎧" },
  });
  assert.ok(set.data);
  assert.equal(set.data.availability, "dnd");
  assert.equal(set.data.presence, "dnd");
  const own = await user.GET("/api/users/me/status/");
  assert.equal(own.data?.availability_until, set.data.availability_until);
  const mine = await user.GET("/api/users/me/");
  assert.equal(mine.data?.username, `cy${run}`);

  const seen = await client(otherToken).GET("/api/users/{id}/status/", { params: { path: { id: me.id } } });
  assert.ok(seen.data);
  assert.equal(label(seen.data), `dnd until ${new Date(until).toISOString()} (🎧 focus)`);
  const missing = await user.GET("/api/users/{id}/status/", { params: { path: { id: 999_999_999 } } });
  assert.equal(missing.error?.error.code, "not_found");
  const many = await user.POST("/api/users/statuses/", { body: { ids: [other.id, me.id, 999_999_999] } });
  assert.deepEqual(many.data?.statuses.map((s) => s.id), [other.id, me.id]);
  assert.deepEqual(many.data?.missing, [999_999_999]);
  const tooLong = await user.PUT("/api/users/me/status/", { body: { text: "x".repeat(101) } });
  assert.equal(tooLong.error?.error.field, "text");

  const counts = await user.GET("/api/users/online-count/");
  assert.ok(counts.data);
  assert.equal(counts.data.count, counts.data.online + counts.data.away + counts.data.dnd);
  const history = await user.GET("/api/users/{id}/presence-history/", {
    params: { path: { id: me.id }, query: { limit: 10 } },
  });
  assert.ok(history.data);
  assert.equal(history.data.events[0]?.to, "dnd");
  const forbidden = await client(otherToken).GET("/api/users/{id}/presence-history/", {
    params: { path: { id: me.id } },
  });
  assert.equal(forbidden.error?.error.code, "forbidden");
  await user.POST("/api/users/logout-all/");
  const after = await user.GET("/api/users/me/");
  assert.equal(after.error?.error.code, "unauthenticated");
});

test("the admins' list: pages, ETag, changes", async () => {
  const admin = client(await adminToken());
  for (const n of [1, 2, 3]) await signUp(client(), `page${n}x${run}`, PASSWORD);
  const everyone = await allUsers(admin, 2);
  const ids = everyone.map((u) => u.id);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
  assert.equal(new Set(ids).size, ids.length);
  assert.ok(everyone.every((u) => typeof u.invisible === "boolean"));

  const first = await admin.GET("/api/users/all-users/", { params: { query: { limit: 1 } } });
  const etag = first.response.headers.get("ETag");
  assert.ok(etag !== null && first.data);
  const again = await admin.GET("/api/users/all-users/", {
    params: { query: { limit: 1 }, header: { "If-None-Match": etag } },
  });
  assert.equal(again.response.status, 304);
  assert.equal(again.response.headers.get("ETag"), etag);

  const since = first.data.as_of;
  const { me, token } = await signUp(client(), `late${run}`, PASSWORD);
  const { changed, next } = await changesSince(admin, since);
  assert.ok(changed.some((u) => u.id === me.id));
  await client(token).POST("/api/users/logout/");
  const later = await changesSince(admin, next);
  assert.deepEqual(
    later.changed.filter((u) => u.username !== (process.env.ADMIN_USERNAME ?? "contract")).map((u) => u.id),
    [me.id],
  );
  const loggedOut = await client(token).GET("/api/users/all-users/");
  assert.equal(loggedOut.error?.error.code, "unauthenticated");
  const badQuery = await admin.GET("/api/users/all-users/", { params: { query: { limit: 0 } } });
  assert.equal(badQuery.error?.error.field, "limit");
  const overview = await admin.GET("/api/admin/overview/");
  assert.ok(overview.data);
  for (const worker of overview.data.workers) {
    assert.match(worker.started_at, /\.\d{1,6}Z$|:\d\dZ$/, "microseconds at most");
  }
  assert.match(overview.data.counted_at, /Z$/);
  const history = await admin.GET("/api/admin/history/", { params: { query: { range: "day" } } });
  assert.ok(history.data);
  assert.equal(history.data.bucket_secs, 300);
  for (const point of history.data.points) {
    assert.equal(typeof point.transitions.login, "number");
  }
  const { token: userToken } = await signUp(client(), `plain${run}`, PASSWORD);
  const refused = await client(userToken).GET("/api/admin/overview/");
  assert.equal(refused.error?.error.code, "forbidden");
});

test("the stream: a ticket, the header, and what each refusal means", async () => {
  const { token, me } = await signUp(client(), `sse${run}`, PASSWORD);
  const user = client(token);
  const ticket = await user.POST("/api/presence/tickets/");
  assert.ok(ticket.data);

  // Through the typed client, with the header: the first event is a snapshot.
  const opened = await user.GET("/api/presence/stream/", {
    params: { query: { ids: String(me.id) } },
    parseAs: "stream",
  });
  assert.equal(opened.response.status, 200);
  const body = opened.response.body;
  assert.ok(body !== null);
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/event: snapshot\nid: \d+\ndata: .*\n\n/.test(text)) {
    const chunk = await reader.read();
    if (chunk.done) break;
    text += chunk.value;
  }
  await reader.cancel();
  const data = /event: snapshot\nid: \d+\ndata: (.*)\n\n/.exec(text)?.[1];
  assert.ok(data !== undefined, text);
  checkValue("snapshot", component("StreamSnapshot"), JSON.parse(data));

  // With the ticket as an EventSource sends it: good once; then used; unknown: expired.
  const url = (query: Record<string, string>) => `${API}/api/presence/stream/?${new URLSearchParams(query)}`;
  const refusal = async (query: Record<string, string>) => {
    const response = await fetch(url(query), { headers: { Accept: "text/event-stream" } });
    await checkAnswer("GET", "/api/presence/stream/", response);
    if (response.status === 200) {
      await response.body?.cancel();
      return "opened";
    }
    const body: unknown = await response.json();
    checkValue("refusal", component("ErrorBody"), body);
    return JSON.stringify(body);
  };
  const query = { ids: String(me.id), ticket: ticket.data.ticket };
  assert.equal(await refusal(query), "opened");
  assert.match(await refusal(query), /"code":"ticket_used"/);
  assert.match(await refusal({ ids: String(me.id), ticket: "never-issued" }), /"code":"ticket_expired"/);
  const spare = await user.POST("/api/presence/tickets/");
  assert.ok(spare.data);
  await user.POST("/api/users/logout/");
  assert.match(await refusal({ ids: String(me.id), ticket: spare.data.ticket }), /"code":"unauthenticated"/);
  const gone = await user.POST("/api/presence/tickets/");
  assert.ok(gone.error);
  assert.equal(afterRefusal(gone.error), "log in");
});

test("the files served from the binary", async () => {
  const anonymous = client();
  for (const path of ["/admin/", "/admin/app.js", "/admin/charts.js", "/admin/app.css", "/static/presence-client.js"] as const) {
    const file = await anonymous.GET(path, { parseAs: "text" });
    assert.ok(file.data !== undefined && file.data.length > 0, path);
  }
  const types = await anonymous.GET("/static/presence-client.d.ts", { parseAs: "text" });
  assert.match(types.data ?? "", /export function subscribe/);
});

after(() => {
  const missed = operations().filter((operation) => !reached.has(operation));
  assert.deepEqual(missed, [], "every operation of the document was called");
});
