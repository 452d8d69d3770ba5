// A stream followed by a standard SSE client library (`eventsource`, fetch-based): opened
// with `Authorization: Bearer` through its `fetch` option, it reconnects by itself after
// the server drops the connection and, sending `Last-Event-ID` on its own, is given
// exactly the changes it missed: no resync, no second snapshot, nobody left alone.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { test } from "node:test";
import { EventSource } from "eventsource";
import { API, checkValue, checked, component } from "./contract.js";
import { type Api, type PublicStatus, api, signUp } from "./client.js";

const PASSWORD = "correct horse battery";
const BINARY = process.env.API_BIN ?? "../../target/debug/presence-api";

function client(token?: string, base = API): Api {
  const typed = api(base, token);
  typed.use(checked);
  return typed;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function eventually(check: () => boolean | Promise<boolean>, ms = 20_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await Promise.resolve(check()).catch(() => false);
    if (value || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** An API replica of its own, on `port`, to be dropped and started again. */
async function replica(port: number): Promise<ChildProcess> {
  const child = spawn(BINARY, ["serve"], {
    env: { ...process.env, LISTEN_ADDR: `127.0.0.1:${port}`, METRICS_LISTEN_ADDR: "127.0.0.1:0" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const up = await eventually(() => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok));
  assert.ok(up, "the replica answers");
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}

interface Received {
  type: string;
  id: string;
  data: { rev: number; users?: PublicStatus[]; changes?: PublicStatus[]; reason?: string };
}

test("the eventsource library resumes by itself with exactly the missed changes", async () => {
  const run = `${process.pid % 100000}`;
  const { token } = await signUp(client(), `watch${run}`, PASSWORD);
  const { token: aliceToken, me: alice } = await signUp(client(), `alice${run}`, PASSWORD);
  const { me: bob } = await signUp(client(), `bob${run}`, PASSWORD);
  const carolName = `carol${run}`;
  const carol = await client().POST("/api/users/register/", { body: { username: carolName, password: PASSWORD } });
  assert.ok(carol.data);
  const carolId = carol.data.id;

  const port = await freePort();
  let server = await replica(port);
  const received: Received[] = [];
  let connections = 0;
  const source = new EventSource(`http://127.0.0.1:${port}/api/presence/stream/?ids=${alice.id},${bob.id},${carolId}`, {
    // The header instead of a ticket: the library's own reconnect then works.
    fetch: (input, init) => {
      connections += 1;
      return fetch(input, { ...init, headers: { ...init.headers, Authorization: `Bearer ${token}` } });
    },
  });
  for (const type of ["snapshot", "presence", "resync"]) {
    source.addEventListener(type, (event) => {
      received.push({ type, id: event.lastEventId, data: JSON.parse(event.data) });
    });
  }
  try {
    assert.ok(await eventually(() => received.some((e) => e.type === "snapshot")), "a snapshot first");
    const [snapshot] = received;
    assert.ok(snapshot);
    checkValue("snapshot", component("StreamSnapshot"), snapshot.data);
    assert.deepEqual(snapshot.data.users?.map((u) => u.id), [alice.id, bob.id, carolId]);

    // The server drops the connection; meanwhile, through another replica, alice sets
    // dnd and carol logs in. Bob is left alone.
    await kill(server);
    const dnd = await client(aliceToken).PUT("/api/users/me/status/", { body: { availability: "dnd", text: "away from keys" } });
    assert.ok(dnd.data);
    const login = await client().POST("/api/users/login/", { body: { username: carolName, password: PASSWORD } });
    assert.ok(login.data);
    server = await replica(port);

    const after = () => received.slice(1);
    const latest = (id: number) =>
      after()
        .flatMap((e) => e.data.changes ?? [])
        .filter((s) => s.id === id)
        .at(-1);
    const caughtUp = await eventually(() => latest(alice.id)?.presence === "dnd" && latest(carolId)?.presence === "online");
    assert.ok(caughtUp, `the missed changes arrive: ${JSON.stringify(received)}`);
    assert.ok(connections >= 2, "the library reconnected by itself");
    for (const event of after()) {
      assert.equal(event.type, "presence", "no resync, no new snapshot");
      checkValue("presence", component("StreamChanges"), event.data);
      assert.equal(event.id, String(event.data.rev));
      assert.ok(event.data.rev > snapshot.data.rev);
    }
    const changed = new Set(after().flatMap((e) => (e.data.changes ?? []).map((s) => s.id)));
    assert.deepEqual([...changed].sort(), [alice.id, carolId].sort(), "exactly who changed");
    // As the server has them (but `last_seen`, which a later flush of activity may move
    // without anything others are told changing).
    const now = await client(token).POST("/api/users/statuses/", { body: { ids: [alice.id, carolId] } });
    const shown = (status: PublicStatus | undefined) => ({ ...status, last_seen: undefined });
    assert.deepEqual([latest(alice.id), latest(carolId)].map(shown), now.data?.statuses.map(shown));
  } finally {
    source.close();
    await kill(server);
  }
});
