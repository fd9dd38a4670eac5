// How long a shopper's phone works for a draw entry: N challenges of a real draw sale, at the
// default difficulty (FLASHGATE_DRAW_POW_MAX unless set), each solved through the real page's
// Web Worker (public/js/pow-worker.js, by public/js/draw.js's `Draw.solve`) in headless
// Chromium with the CPU throttled 4x (CDP Emulation.setCPUThrottlingRate, Lighthouse's
// "mid-range phone"). Prints every solve's time, then p50/p95/max and the mean hashes. A
// measurement, not a test: it asserts nothing about speed. docs/draws.md quotes its figures.
//
// Usage (from the checkout, tests/browser's npm packages installed):
//   node loadtest/pow-solve.mjs            # POW_N=20 POW_THROTTLE=4, FLASHGATE_BIN as the tests
// Needs the local services (MariaDB, Redis), like the browser tests.
import { randomBytes } from "node:crypto";
import { freePort, startServer, launchBrowser, cleanUp, sandbox } from "../tests/browser/harness.mjs";

const N = Number(process.env.POW_N || 20);
const THROTTLE = Number(process.env.POW_THROTTLE || 4);

const { ns, db, env: baseEnv, fg } = sandbox("pow");
const token = randomBytes(24).toString("hex");
const ports = [await freePort(), await freePort()];
const base = `http://127.0.0.1:${ports[0]}`;
const admin = `http://127.0.0.1:${ports[1]}`;
const env = { ...baseEnv(ports[0]), FLASHGATE_ADMIN_LISTEN: `127.0.0.1:${ports[1]}`, FLASHGATE_ADMIN_TOKEN: token };

let server, browser;
try {
  fg(ports[0], "migrate");
  server = await startServer(env, `${base}/healthz`);
  // a draw sale whose registration opens in an hour: challenges are issued from its making
  const from = Date.now() + 3600000;
  const r = await fetch(`${admin}/api/admin/sales`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({
      name: "Draw", title: "Proof-of-work timing", imageUrl: "/img/goods.svg", price: 2, salePrice: 1,
      stock: 1, startAt: from + 60000, endAt: from + 120000, mode: "draw", registerFrom: from,
      registerUntil: from + 60000, claimFor: 600,
    }),
  });
  const made = await r.json();
  if (r.status !== 201) throw new Error(`making the draw sale: ${JSON.stringify(made)}`);
  const goods = made.data.goodsId;

  browser = await launchBrowser();
  const page = await browser.newPage();
  await page.goto(`${base}/goods.html?id=${goods}`);
  await page.waitForFunction(() => document.querySelector("#draw-phase").dataset.phase === "scheduled");
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Emulation.setCPUThrottlingRate", { rate: THROTTLE });
  const solves = await page.evaluate(async (n) => {
    const out = [];
    for (let i = 0; i < n; i++) {
      const began = performance.now();
      const { proof, tookMs } = await Draw.solve();
      const number = JSON.parse(atob(proof)).number;
      out.push({ tookMs, wallMs: performance.now() - began, number });
    }
    return out;
  }, N);
  const maxnumber = (await (await fetch(`${base}/api/draws/${goods}/challenge`)).json()).data.maxnumber;

  const sorted = solves.map((s) => s.tookMs).sort((a, b) => a - b);
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
  const perHash = solves.reduce((a, s) => a + s.tookMs, 0) / solves.reduce((a, s) => a + s.number + 1, 0);
  for (const [i, s] of solves.entries()) {
    console.log(`solve ${i + 1}: ${s.tookMs.toFixed(0)} ms in the worker (${s.wallMs.toFixed(0)} ms with the fetch), n = ${s.number}`);
  }
  console.log(`maxnumber ${maxnumber}, CPU throttled ${THROTTLE}x, ${N} solves: ` +
    `p50 ${q(50).toFixed(0)} ms, p95 ${q(95).toFixed(0)} ms, max ${sorted[sorted.length - 1].toFixed(0)} ms; ` +
    `${(perHash * 1000).toFixed(1)} µs a hash, so ${((maxnumber / 2) * perHash).toFixed(0)} ms expected on average`);
} finally {
  await cleanUp({ browser, server, db, ns });
}
