// A draw sale's pages (public/goods.html with public/js/draw.js and the Web Worker
// public/js/pow-worker.js) end to end in headless Chromium against a real `flashgate all`: a draw
// of 2 units is made through sale management; three shoppers open its page before registration
// opens, and each enters through "Enter the draw" once it opens (the proof of work solved in the
// worker at the default difficulty) and is told "you are entry N"; the worker draws at
// `registerUntil`; the pages show the seed, the published list and each shopper's place: two
// won (a countdown to claim), one is on the waitlist. One winner buys through the same page; the
// other lets the claim pass, and the shopper on the waitlist, page left open, is moved up (the
// stream's `draw` event), sees the claim and buys. The publication checks out
// (`flashgate draw verify`). Every state is checked with axe (screenshots draw-*.png). Then the
// console (public/admin.html): a draw sale made through its form shows its draw (scheduled,
// the commitment), and the drawn sale above shows its entries, seed, claims and the waitlist's
// move.
//
// Needs what shopper.test.mjs needs (FLASHGATE_BIN, the local services, CHROMIUM).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { shots, freePort, startServer, launchBrowser, cleanUp, screenshots, sandbox } from "./harness.mjs";

const { ns, db, env: baseEnv, fg: baseFg, sql } = sandbox("draw");
const token = randomBytes(24).toString("hex");
// long enough for three shoppers to enter on a loaded machine; short enough to wait out
const REGISTER_MS = 20000;
const CLAIM_FOR_S = 15;

let server, browser, base, admin, ports, drawn;
const env = () => ({
  ...baseEnv(ports[0]),
  FLASHGATE_ADMIN_LISTEN: `127.0.0.1:${ports[1]}`,
  FLASHGATE_ADMIN_TOKEN: token,
  FLASHGATE_CAPTCHA: "off",
});
const fg = (...args) => baseFg(ports[0], ...args);
const shot = screenshots("draw", { axe: true });

before(async () => {
  ports = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${ports[0]}`;
  admin = `http://127.0.0.1:${ports[1]}`;
  fg("migrate");
  fg("users", "--count", "3", "--out", path.join(shots, "draw-tokens.csv"));
  server = await startServer(env(), `${base}/healthz`);
  browser = await launchBrowser();
});

after(() => cleanUp({ browser, server, db, ns }));

async function login(page, userId) {
  const mobile = sql(`SELECT mobile FROM users WHERE id = ${userId}`);
  await page.goto(`${base}/login.html`);
  await page.fill("#mobile", mobile);
  await page.fill("#password", "123456");
  await page.click("#submit");
  await page.waitForURL(`${base}/`);
}

async function makeDraw(registerFrom) {
  const registerUntil = registerFrom + REGISTER_MS;
  const r = await fetch(`${admin}/api/admin/sales`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({
      name: "Draw phone", title: "A phone by draw", imageUrl: "/img/goods.svg",
      price: 999.0, salePrice: 1.0, stock: 2, startAt: registerUntil, endAt: registerUntil + 3600000,
      mode: "draw", registerFrom, registerUntil, claimFor: CLAIM_FOR_S,
    }),
  });
  const body = await r.json();
  assert.equal(r.status, 201, JSON.stringify(body));
  return { goods: body.data.goodsId, registerUntil };
}

const youState = (page) => page.$eval("#draw-you", (e) => e.dataset.state);

test("three shoppers enter through the page; the draw is shown and checkable; winners buy, a lapsed claim moves the waitlist up", async () => {
  const pages = [];
  for (const user of [1, 2, 3]) {
    const ctx = await browser.newContext({ viewport: { width: 420, height: 900 } });
    const page = await ctx.newPage();
    await login(page, user);
    pages.push(page);
  }
  const { goods, registerUntil } = await makeDraw(Date.now() + 4000);
  drawn = goods;

  // before registration: the phase and the commitment, no way to enter yet
  await pages[0].goto(`${base}/goods.html?id=${goods}`);
  await pages[0].waitForFunction(() => document.querySelector("#draw-phase").dataset.phase === "scheduled");
  assert.match(await pages[0].textContent("#draw-commitment"), /^[0-9a-f]{64}$/);
  assert.equal(await pages[0].isVisible("#draw-enter"), false, "Enter shown before registration opens");
  assert.equal(await pages[0].isVisible("#buy-box"), false, "the buy shown for a draw before any claim");
  await shot(pages[0], "scheduled");

  // registration: each page solves its challenge in the worker and enters
  for (const [i, page] of pages.entries()) {
    if (i > 0) await page.goto(`${base}/goods.html?id=${goods}`);
    await page.waitForSelector("#draw-enter:not(.hidden)", { timeout: 15000 });
    if (i === 0) {
      // the work is announced while it runs or once done (screen readers read the status line)
      await page.waitForFunction(() => document.querySelector("#draw-work").textContent.length > 0);
      await shot(page, "registering");
    }
    await page.click("#draw-enter");
    await page.waitForFunction(() => /You are entry \d+/.test(document.querySelector("#draw-you").textContent), null, { timeout: 30000 });
    await page.waitForFunction(() => document.querySelector("#draw-you").dataset.state === "entered");
    if (i === 0) await shot(page, "entered");
  }
  const numbers = await Promise.all(pages.map((p) => p.textContent("#draw-you")));
  assert.deepEqual(numbers.map((t) => Number(t.match(/entry (\d+)/)[1])).sort(), [1, 2, 3]);
  assert.ok(Date.now() < registerUntil, "the entries came after registration closed: raise REGISTER_MS");
  // the page counts them (it reads the draw again every few seconds)
  await pages[0].waitForFunction(() => document.querySelector("#draw-entries").textContent === "3 entries", null, { timeout: 15000 });

  // the draw, by itself at registerUntil: every page turns to its result
  for (const page of pages) {
    await page.waitForFunction(() => document.querySelector("#draw-phase").dataset.phase === "claiming", null, { timeout: REGISTER_MS + 15000 });
  }
  // the winners' claims come with the waitlist's first step, a moment after the draw
  let states = [];
  for (let i = 0; i < 50; i++) {
    states = await Promise.all(pages.map(youState));
    if (states.filter((s) => s === "claiming").length === 2) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual([...states].sort(), ["claiming", "claiming", "waitlist"], `states: ${states}`);
  const [buyer, lapser] = pages.filter((_, i) => states[i] === "claiming");
  const waiting = pages[states.indexOf("waitlist")];

  // the seed and the published list, which checks out
  assert.match(await buyer.textContent("#draw-seed"), /^[0-9a-f]{64}$/);
  const href = await buyer.getAttribute("#draw-published", "href");
  const published = await (await fetch(new URL(href, base))).json();
  assert.equal(published.entries.length, 3);
  assert.equal(published.winners.length, 2);
  assert.match(fg("draw", "verify", String(goods)), /ok/i);
  assert.match(await waiting.textContent("#draw-you"), /number 3 in the draw, on the waitlist/);
  await shot(waiting, "waitlisted");

  // a winner: place, a countdown, and the ordinary buy on the same page
  assert.match(await buyer.textContent("#draw-you"), /You won! You are number [12] in the draw/);
  assert.match(await buyer.textContent("#draw-countdown"), /Time left to buy: 00:[01]\d/);
  await buyer.waitForSelector("#buy:not([disabled])");
  await shot(buyer, "won");
  await buyer.click("#buy");
  await buyer.waitForSelector("#order-link", { timeout: 15000 });
  await buyer.waitForFunction(() => document.querySelector("#draw-you").dataset.state === "claimed", null, { timeout: 20000 });
  assert.equal(await buyer.isDisabled("#buy"), true, "a winner who bought may buy again");
  await shot(buyer, "bought");

  // the other winner lets the claim pass: the waitlisted shopper's open page is told and buys
  await lapser.waitForFunction(() => document.querySelector("#draw-you").dataset.state === "lapsed", null, { timeout: CLAIM_FOR_S * 1000 + 20000 });
  await shot(lapser, "lapsed");
  await waiting.waitForFunction(() => document.querySelector("#draw-you").dataset.state === "claiming", null, { timeout: 10000 });
  assert.match(await waiting.textContent("#draw-you"), /You won! You are number 3 in the draw/);
  await waiting.waitForSelector("#buy:not([disabled])");
  await shot(waiting, "moved-up");
  await waiting.click("#buy");
  await waiting.waitForSelector("#order-link", { timeout: 15000 });
  await shot(waiting, "moved-up-bought");
  const orders = sql(`SELECT COUNT(*) FROM seckill_order WHERE goods_id = ${goods}`);
  assert.equal(orders, "2", "two units sold, one to each buyer");
});

test("the console makes a draw sale and shows a draw's entries, seed, claims and waitlist", async () => {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 1000 } });
  const page = await ctx.newPage();
  const figure = (name) => page.textContent(`#live-figures dd[data-figure="${name}"]`);
  await page.goto(`${admin}/admin.html`);
  await page.fill("#token", token);
  await page.click("#enter");
  await page.waitForSelector("#sales:not(.hidden)");

  // a new draw sale through the form: the draw's fields appear with the mode
  await page.click("#new");
  assert.equal(await page.isVisible("#f-registerFrom"), false, "a first-come sale shows the draw's fields");
  await page.fill("#f-name", "Console draw");
  await page.fill("#f-title", "A phone by draw, from the console");
  await page.fill("#f-price", "999");
  await page.fill("#f-salePrice", "1");
  await page.fill("#f-stock", "5");
  await page.selectOption("#f-mode", "draw");
  assert.equal(await page.isVisible("#f-registerFrom"), true);
  await page.fill("#f-claimFor", "900");
  await page.click("#save");
  await page.waitForSelector("#live:not(.hidden)");
  await page.waitForSelector('#live-figures dd[data-figure="Draw"]');
  assert.match(await figure("Draw"), /^scheduled: registration .* 900 s to claim$/);
  assert.match(await figure("Commitment"), /^[0-9a-f]{64}$/);
  assert.equal(await figure("Seed"), "published at the draw");
  assert.match(await figure("Entries"), /^0 \(/);

  // the sale drawn in the test above: its entries, seed, claims and the waitlist's move
  await page.click("#back");
  await page.waitForSelector(`tr[data-goods="${drawn}"]`);
  await page.click(`tr[data-goods="${drawn}"]`);
  await page.waitForSelector('#live-figures dd[data-figure="Claims"]');
  assert.match(await figure("Draw"), /^claiming: /);
  assert.match(await figure("Entries"), /^3 \(/);
  assert.match(await figure("Seed"), /^[0-9a-f]{64}$/);
  await page.waitForFunction(() => document.querySelector('#live-figures dd[data-figure="Claims"]').textContent
    === "3 given: 0 holding, 2 bought, 1 lapsed; the waitlist moved 1", null, { timeout: 10000 });
  await shot(page, "console-drawn");
  await ctx.close();
});
