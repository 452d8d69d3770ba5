// What both browser tests need: the real API and worker (debug builds from `cargo build`)
// on a scratch database and Redis prefix, with compressed timings, and Debian's Chromium.
// Everything started is stopped (by pid) and the database dropped afterwards.
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const ARTIFACTS = join(ROOT, ".ci", "browser", "artifacts");
const SERVER = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";
export const PASSWORD = "correct horse battery";

export async function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Polls `check` every 100 ms until it is truthy or `ms` pass; its last value. */
export async function eventually(check, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check().catch(() => false);
    if (value || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function bin(name) {
  return join(ROOT, "target", "debug", name);
}

/** A scratch deployment: `api(extraEnv)` starts an API replica; one worker runs. */
export class Deployment {
  static async start({ cors = [] } = {}) {
    const d = new Deployment();
    d.name = `presence_browser_${process.pid}_${Date.now() % 100000}`;
    d.databaseUrl = SERVER.replace(/\/postgres\?/, `/${d.name}?`);
    d.env = {
      ...process.env,
      DATABASE_URL: d.databaseUrl,
      REDIS_PREFIX: d.name,
      RUST_LOG: "warn",
      OFFLINE_AFTER_SECS: "4",
      AWAY_AFTER_SECS: "2",
      HEARTBEAT_INTERVAL_MS: "500",
      LAST_SEEN_FLUSH_MS: "200",
      STREAM_BATCH_MS: "200",
      METRICS_LISTEN_ADDR: "127.0.0.1:0",
      CORS_ALLOWED_ORIGINS: cors.join(","),
    };
    d.processes = [];
    d.port = await freePort();
    await d.api(d.port);
    execFileSync(bin("presence-api"), ["create-admin", "--username", "operator"], {
      env: { ...d.env, ADMIN_PASSWORD: PASSWORD },
    });
    d.worker = d.run(bin("presence-worker"), ["run"], {
      SWEEP_SCHEDULE: "* * * * * *",
      WORKER_HTTP_ADDR: "127.0.0.1:0",
    });
    return d;
  }

  run(binary, args, env = {}) {
    const child = spawn(binary, args, { env: { ...this.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
    child.log = "";
    child.stderr.on("data", (chunk) => (child.log += chunk));
    this.processes.push(child);
    return child;
  }

  /** Starts an API replica on `port`, and waits until it answers. */
  async api(port) {
    const child = this.run(bin("presence-api"), ["serve"], { LISTEN_ADDR: `127.0.0.1:${port}` });
    const up = await eventually(() => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok), 60000);
    if (!up) throw new Error(`the API did not start:\n${child.log}`);
    return child;
  }

  url(path = "", port = this.port) {
    return `http://127.0.0.1:${port}${path}`;
  }

  async call(method, path, { token, body, port } = {}) {
    const response = await fetch(this.url(path, port), {
      method,
      headers: {
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...(body ? { "Content-Type": "application/json" } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  async signUp(username, port) {
    const user = await this.call("POST", "/api/users/register/", { body: { username, password: PASSWORD }, port });
    const { token } = await this.call("POST", "/api/users/login/", { body: { username, password: PASSWORD }, port });
    return { id: user.id, token };
  }

  async stop(child, signal = "SIGTERM") {
    if (child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill(signal);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15000))]);
    if (child.exitCode === null) child.kill("SIGKILL");
  }

  async close() {
    for (const child of this.processes) await this.stop(child);
    const admin = SERVER;
    try {
      execFileSync("psql", [admin, "-q", "-c", `DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`], { stdio: "ignore" });
    } catch {}
    try {
      const keys = execFileSync("redis-cli", ["--scan", "--pattern", `${this.name}:*`]).toString().split("\n").filter(Boolean);
      if (keys.length) execFileSync("redis-cli", ["del", ...keys], { stdio: "ignore" });
    } catch {}
  }
}

/** Debian's Chromium, headless, at 1280×800; console lines are kept for a failure report. */
export async function browser() {
  const instance = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  const context = await instance.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.consoleLines = [];
  page.on("console", (message) => page.consoleLines.push(`[${message.type()}] ${message.text()}`));
  page.on("pageerror", (error) => page.consoleLines.push(`[pageerror] ${error.message}`));
  return { instance, context, page };
}

/** On failure: a screenshot and the console log, saved and printed where CI shows them. */
export async function reportFailure(name, page, deployment) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const shot = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  const log = join(ARTIFACTS, `${name}.console.log`);
  writeFileSync(log, page.consoleLines.join("\n"));
  console.log(`\n--- ${name} failed: screenshot ${shot}\n--- browser console (${log}):\n${page.consoleLines.join("\n")}`);
  for (const child of deployment?.processes ?? []) {
    console.log(`--- ${child.spawnfile} log:\n${child.log.slice(-4000)}`);
  }
}
