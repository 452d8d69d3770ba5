// The operator page in a real browser: logging in, and presence, sweeps and workers
// changing on it live, without a reload.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ARTIFACTS, Deployment, PASSWORD, browser, eventually, reportFailure } from "./harness.mjs";

async function logIn(page, deployment, username) {
  await page.goto(deployment.url("/admin/"));
  await page.fill("#username", username);
  await page.fill("#password", PASSWORD);
  await page.click("#login-form button[type=submit]");
}

test("the operator page shows presence, sweeps and workers live", async () => {
  const deployment = await Deployment.start();
  const { instance, page } = await browser();
  let alice;
  let heartbeats;
  try {
    const response = await page.goto(deployment.url("/admin/"));
    const csp = response.headers()["content-security-policy"];
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(response.headers()["x-content-type-options"], "nosniff");

    await logIn(page, deployment, "operator");
    await page.waitForSelector("#dashboard:not([hidden])");
    // The worker reports itself; sweeps run every second and appear as rows.
    await page.waitForSelector("#workers li[data-name^='worker-']", { timeout: 20000 });
    const sweepsAtFirst = await page.locator("#sweeps tbody tr").count();

    // A user logging in through the API (their app then heartbeating) appears online...
    alice = await deployment.signUp("alice");
    let active = true;
    heartbeats = setInterval(() => {
      deployment.call("POST", "/api/users/heartbeat/", { token: alice.token, body: { active } }).catch(() => {});
    }, 400);
    const row = (presence) => `#users tbody tr[data-user-id='${alice.id}'][data-presence='${presence}']`;
    await page.waitForSelector(row("online"), { timeout: 20000 });
    // ... goes away when their app says it sits idle ...
    active = false;
    await page.waitForSelector(row("away"), { timeout: 20000 });
    clearInterval(heartbeats);
    // ... and offline when they log out.
    await deployment.call("POST", "/api/users/logout/", { token: alice.token });
    await page.waitForSelector(row("offline"), { timeout: 20000 });

    const sweepsGrew = await eventually(async () => (await page.locator("#sweeps tbody tr").count()) > Math.max(sweepsAtFirst, 1) - 1
      && (await page.locator("#sweeps tbody tr td").first().textContent()) !== "No sweep has run yet.", 20000);
    assert.ok(sweepsGrew, "the sweep table gained rows");
    const counted = await eventually(async () =>
      Number((await page.textContent("#count-offline")).replace(/,/g, "")) >= 1, 10000);
    assert.ok(counted, "alice counted offline");

    // Clicking a user shows their transitions.
    await page.click(`#users tbody tr[data-user-id='${alice.id}']`);
    await page.waitForSelector("#history:not([hidden]) li");
    const history = await page.textContent("#history-list");
    assert.match(history, /online → away \(idle\)/);
    assert.match(history, /away → offline \(logout\)/);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "admin.png") });
  } catch (error) {
    clearInterval(heartbeats);
    await reportFailure("admin", page, deployment);
    throw error;
  } finally {
    await instance.close();
    await deployment.close();
  }
});

test("the charts draw the sampled history, follow it live, and show it again after a reload", async () => {
  const deployment = await Deployment.start();
  const { instance, page } = await browser();
  const legend = (chart, series) => `#${chart} .legend li[data-series='${series}']`;
  const value = async (chart, series) => Number((await page.getAttribute(legend(chart, series), "data-value", { timeout: 1000 }).catch(() => "")) || NaN);
  let heartbeats;
  try {
    await logIn(page, deployment, "operator");
    await page.waitForSelector("#dashboard:not([hidden])");
    // The worker samples at every sweep tick (every second here): the operator is online.
    assert.ok(await eventually(async () => (await value("chart-presence", "online")) >= 1, 20000), "the operator online on the chart");
    assert.match(await page.textContent("#counted-at"), /^as of /, "the tiles say when they were counted");

    // Every chart is an image with a title and a description in words.
    for (const id of ["chart-presence", "chart-transitions", "chart-sweep-duration", "chart-swept", "chart-publish-lag", "chart-streams"]) {
      const chart = page.locator(`#${id} svg[role=img]`);
      assert.equal(await chart.count(), 1, id);
      const [titleId, descId] = (await chart.getAttribute("aria-labelledby")).split(" ");
      assert.match(await page.textContent(`#${titleId}`), / over the last hour$/, id);
      assert.ok((await page.textContent(`#${descId}`)).length > 10, id);
      assert.ok((await page.textContent(`#${id} figcaption`)).length > 0, id);
    }
    assert.match(await page.textContent("#chart-presence desc"), /online: now \d+/);

    // Without a reload: a second user logs in (their app heartbeating), and the chart and
    // the transitions follow.
    const alice = await deployment.signUp("alice");
    heartbeats = setInterval(() => {
      deployment.call("POST", "/api/users/heartbeat/", { token: alice.token, body: { active: true } }).catch(() => {});
    }, 400);
    assert.ok(await eventually(async () => (await value("chart-presence", "online")) >= 2, 20000), "alice joins the line");
    assert.ok(await eventually(async () => (await value("chart-transitions", "login")) > 0, 20000), "logins per minute");
    // The page's own stream (the users table) is counted.
    assert.ok(await eventually(async () => (await value("chart-streams", "streams")) >= 1, 20000), "streams open");
    assert.ok((await value("chart-sweep-duration", "sweep")) >= 0);

    // A new page shows the history at once, from the server's samples.
    await page.reload();
    await logIn(page, deployment, "operator");
    await page.waitForSelector(`#chart-presence .series.online[data-points]`, { timeout: 10000 });
    assert.ok(Number(await page.getAttribute("#chart-presence .series.online", "data-points")) >= 1);
    assert.ok((await value("chart-presence", "online")) >= 2, "the last hour, after a reload");

    // The last day, in five-minute points.
    await page.click("#range-day");
    assert.ok(await eventually(async () => / over the last day$/.test(await page.textContent("#chart-presence title")), 10000));
    assert.equal(await page.getAttribute("#range-day", "aria-pressed"), "true");
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "admin-charts.png"), fullPage: true });
  } catch (error) {
    await reportFailure("admin-charts", page, deployment);
    throw error;
  } finally {
    clearInterval(heartbeats);
    await instance.close();
    await deployment.close();
  }
});

test("a user who is not an admin sees only that the page is for admins", async () => {
  const deployment = await Deployment.start();
  const { instance, page } = await browser();
  try {
    await deployment.signUp("bob");
    let overviewCalls = 0;
    page.on("request", (request) => {
      if (request.url().includes("/api/admin/") || request.url().includes("/all-users")) overviewCalls += 1;
    });
    await logIn(page, deployment, "bob");
    await page.waitForSelector("#denied:not([hidden])");
    assert.equal(await page.isHidden("#dashboard"), true);
    assert.equal(overviewCalls, 0, "no data was asked for");
  } catch (error) {
    await reportFailure("admin-denied", page, deployment);
    throw error;
  } finally {
    await instance.close();
    await deployment.close();
  }
});
