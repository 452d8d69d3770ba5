// presence-client.js as a chat frontend uses it, in a real browser: heartbeats flow,
// a hidden page reports idle, and a stream killed with its API process resumes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { Deployment, browser, eventually, freePort, reportFailure } from "./harness.mjs";

test("presence-client.js heartbeats, reports idle, and resumes a killed stream", async () => {
  const pagePort = await freePort();
  const origin = `http://127.0.0.1:${pagePort}`;
  const deployment = await Deployment.start({ cors: [origin] });
  // The chat frontend's page, on an origin of its own.
  const site = createServer((_, response) => {
    response.setHeader("Content-Type", "text/html");
    response.end(`<!doctype html><title>chat</title>
      <script type="module">
        import * as presence from "${deployment.url("/static/presence-client.js")}";
        window.presence = presence;
        window.ready = true;
      </script>`);
  }).listen(pagePort, "127.0.0.1");
  const { instance, page } = await browser();
  let replica;
  try {
    const carol = await deployment.signUp("carol");
    const watcher = await deployment.signUp("watcher");
    const dave = await deployment.call("POST", "/api/users/register/", { body: { username: "dave", password: "correct horse battery" } });
    await page.goto(origin);
    await page.waitForFunction(() => window.ready === true);
    const statusOf = (id) => deployment.call("GET", `/api/users/${id}/status/`, { token: watcher.token });

    // Heartbeats flow, at the server's interval: last_seen keeps moving.
    await page.evaluate(({ base, token }) => window.presence.start({ baseUrl: base, token }),
      { base: deployment.url(), token: carol.token });
    const first = (await statusOf(carol.id)).last_seen;
    assert.ok(await eventually(async () => (await statusOf(carol.id)).last_seen > first, 10000), "heartbeats flow");
    assert.equal((await statusOf(carol.id)).presence, "online");

    // A hidden page reports idle: carol goes away, and stays connected.
    await page.evaluate(() => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    assert.ok(await eventually(async () => (await statusOf(carol.id)).presence === "away", 15000), "hidden is idle");

    // A stream watching dave; its API process is killed, dave logs in through another
    // replica meanwhile, the first comes back: the stream resumes with what it missed.
    await page.evaluate((id) => {
      window.kinds = [];
      window.sub = window.presence.subscribe([id], (changed, all, kind) => {
        window.kinds.push(kind);
        window.dave = all.get(id);
      });
    }, dave.id);
    await page.waitForFunction(() => window.dave && window.dave.presence === "offline");
    const before = await page.evaluate(() => window.sub.lastEventId);
    const replicaPort = await freePort();
    replica = await deployment.api(replicaPort);
    const api = deployment.processes[0];
    await deployment.stop(api);
    const { token: daveToken } = await deployment.call("POST", "/api/users/login/", {
      body: { username: "dave", password: "correct horse battery" }, port: replicaPort });
    // Dave's app keeps heartbeating (through the replica), so he stays online.
    const daveBeats = setInterval(() => deployment.call("POST", "/api/users/heartbeat/",
      { token: daveToken, port: replicaPort }).catch(() => {}), 400);
    try {
      await deployment.api(deployment.port);
      await page.waitForFunction(() => window.dave.presence === "online", null, { timeout: 30000 });
    } finally {
      clearInterval(daveBeats);
    }
    const kinds = await page.evaluate(() => window.kinds);
    assert.deepEqual(kinds, ["snapshot", "presence"], "resumed with the change, not a new snapshot");
    assert.ok((await page.evaluate(() => window.sub.lastEventId)) > before);

    // Logging out stops the heartbeats and ends the session.
    await page.evaluate(() => window.presence.logout());
    assert.ok(await eventually(async () => (await statusOf(carol.id)).presence === "offline", 10000));
  } catch (error) {
    const state = await page.evaluate(() => JSON.stringify({
      kinds: window.kinds, dave: window.dave, lastEventId: window.sub?.lastEventId,
    })).catch(() => "unreadable");
    page.consoleLines.push(`[test] page state: ${state}`);
    await reportFailure("client", page, deployment);
    throw error;
  } finally {
    await instance.close();
    site.close();
    await deployment.close();
  }
});
