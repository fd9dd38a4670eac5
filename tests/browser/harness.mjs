// What the browser tests share: a free port, a real `flashgate all` started and waited for,
// Debian's Chromium launched headless, numbered screenshots, and the clean-up of the test's
// database and Redis keys.
import { createHash, randomBytes } from "node:crypto";
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const bin = process.env.FLASHGATE_BIN || path.join(root, "target/debug/flashgate");
export const shots = path.join(root, "target/test-output/browser");
mkdirSync(shots, { recursive: true });

export function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/// `flashgate all` with `env`, once `health` (a /healthz URL) answers.
export async function startServer(env, health) {
  const server = spawn(bin, ["all"], { env, stdio: ["ignore", "inherit", "inherit"] });
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(health)).ok) break; } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  return server;
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/// A screenshot function whose files are `PREFIX-NN-name.png`, numbered in order. With
/// `{ axe: true }` (the shoppers' pages) each state shot is also checked with axe-core, and a
/// serious or critical violation fails the test there.
export function screenshots(prefix, { axe = false } = {}) {
  let step = 0;
  return async (page, name) => {
    step += 1;
    const file = `${prefix}-${String(step).padStart(2, "0")}-${name}.png`;
    await page.screenshot({ path: path.join(shots, file), fullPage: true });
    if (axe) {
      const serious = await axeCheck(page, `${prefix} ${name}`);
      if (serious.length) {
        throw new Error(`axe-core: serious or critical violations on ${prefix} ${name}: ${JSON.stringify(serious)}`);
      }
    }
  };
}

/// Stops the browser and the server, drops the database and the Redis namespace.
export async function cleanUp({ browser, server, db, ns }) {
  await browser?.close();
  server?.kill("SIGTERM");
  await new Promise((r) => (server ? server.on("exit", r) : r()));
  execFileSync("mariadb", ["-uroot", "-h127.0.0.1", "-e", `DROP DATABASE IF EXISTS \`${db}\``]);
  const keys = execFileSync("redis-cli", ["--scan", "--pattern", `${ns}*`], { encoding: "utf8" })
    .split("\n").filter(Boolean);
  for (let i = 0; i < keys.length; i += 500) execFileSync("redis-cli", ["del", ...keys.slice(i, i + 500)]);
  // the namespace's releases of the Lua scripts: Redis Functions libraries fg_<sha1(ns)[..8]>_v<N>
  const lib = `fg_${createHash("sha1").update(ns).digest("hex").slice(0, 8)}_v`;
  const listed = execFileSync("redis-cli", ["FUNCTION", "LIST", "LIBRARYNAME", `${lib}*`], { encoding: "utf8" });
  for (const name of listed.split("\n").filter((l) => l.startsWith(lib))) {
    execFileSync("redis-cli", ["FUNCTION", "DELETE", name]);
  }
}

/// axe-core (npm, pinned in package.json) run on the page as it stands: every violation it finds
/// is printed; the serious and critical ones are returned (the tests fail on them).
export async function axeCheck(page, name) {
  // evaluated through the browser's debugging protocol, not added as a <script>: the pages'
  // Content-Security-Policy (script-src 'self', no inline script) refuses an inline tag, as it should
  await page.evaluate(readFileSync(path.join(root, "tests/browser/node_modules/axe-core/axe.min.js"), "utf8"));
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) }));
  });
  for (const v of found) console.log(`axe ${name}: ${v.impact} ${v.id} (${v.help}) at ${v.nodes.join(", ")}`);
  return found.filter((v) => v.impact === "serious" || v.impact === "critical");
}

/// The English words on screen, leaving out the brand, the switch's "English" and what comes from
/// the sale's data (its name and title, the order's item and number).
export async function englishOnScreen(page, withTitle) {
  return page.evaluate((withTitle) => {
    const body = document.body.cloneNode(true);
    body.querySelectorAll("#title, .name, #name, #id, #lang, img").forEach((e) => e.remove());
    const text = `${withTitle ? document.title : ""} ${body.innerText}`.replace(/flashgate/g, "");
    return [...new Set(text.match(/[A-Za-z]{2,}/g) || [])];
  }, withTitle);
}


/// A test's own database and Redis namespace (`PREFIX` + a random id) for a `flashgate all` with
/// the captcha on, and the ways to reach them: `env(port)`, `fg(port, ...args)` (the binary),
/// `redis(...args)` (redis-cli), `sql(query)` (mariadb, tab-separated).
export function sandbox(prefix) {
  const id = randomBytes(6).toString("hex");
  const ns = `${prefix}${id}:`;
  const db = `fg_${prefix}_${id}`;
  const env = (port) => ({
    ...process.env,
    FLASHGATE_DATABASE_URL: `mysql://root@127.0.0.1:3306/${db}`,
    FLASHGATE_NAMESPACE: ns,
    FLASHGATE_LISTEN: `127.0.0.1:${port}`,
    FLASHGATE_CAPTCHA: "on",
    FLASHGATE_PUBLIC_DIR: path.join(root, "public"),
    FLASHGATE_LOG: "warn",
  });
  return {
    ns,
    db,
    env,
    fg: (port, ...args) => execFileSync(bin, args, { env: env(port), encoding: "utf8" }),
    redis: (...args) => execFileSync("redis-cli", args, { encoding: "utf8" }).trim(),
    sql: (q) => execFileSync("mariadb", ["-uroot", "-h127.0.0.1", "-N", "-B", db, "-e", q], { encoding: "utf8" }).trim(),
  };
}
