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
