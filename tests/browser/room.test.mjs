// The waiting room on the sale page, end to end in headless Chromium against a real
// `flashgate all`: a shopper opens the page before the start and is in the room (no position
// before the draw); at the start a latecomer queues behind everyone who was there, sees their
// position move up (never back) by push (the page's event stream: no polling request while it
// is up), is let through, and buys; on an edge that refuses streams (its cap at 0) a page polls
// instead; on an edge whose room takes a proof of work (FLASHGATE_ROOM_POW=on) the page solves
// the challenge by itself in its worker and joins. Screenshots: room-*.png in
// target/test-output/browser/.
//
// Needs what shopper.test.mjs needs (FLASHGATE_BIN, the local services, CHROMIUM).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { root, bin, shots, freePort, startServer, launchBrowser, cleanUp, screenshots, englishOnScreen } from "./harness.mjs";

const id = randomBytes(6).toString("hex");
const ns = `room${id}:`;
const db = `fg_room_${id}`;
const EARLY = 30; // shoppers in the room before the start, besides the browser's
const RATE = 4; // tickets let through per second

let server, browser, base, goods, tokens, startsAt, refusing, refusingBase, proving, provingBase;


let port;
const env = () => ({
  ...process.env,
  FLASHGATE_DATABASE_URL: `mysql://root@127.0.0.1:3306/${db}`,
  FLASHGATE_NAMESPACE: ns,
  FLASHGATE_LISTEN: `127.0.0.1:${port}`,
  FLASHGATE_ADMIN_TOKEN: "",
  FLASHGATE_CAPTCHA: "off",
  FLASHGATE_PUBLIC_DIR: path.join(root, "public"),
  FLASHGATE_LOG: "warn",
});
const fg = (...args) => execFileSync(bin, args, { env: env(), encoding: "utf8" });

const shot = screenshots("room", { axe: true });

before(async () => {
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  fg("migrate");
  fg("users", "--count", String(EARLY + 7), "--out", path.join(shots, "room-tokens.csv"));
  tokens = readFileSync(path.join(shots, "room-tokens.csv"), "utf8").trim().split("\n").slice(1)
    .map((l) => l.split(",")[1]);
  const sale = JSON.parse(fg("sale", "create", "--starts-in", "12", "--lasts", "3600", "--json", JSON.stringify({
    name: "Fair phone", title: "A phone, sold fairly", price: 999, salePrice: 1, stock: 50,
    pathFactor: 10, roomOpensBefore: 600, roomRate: RATE,
  })));
  goods = sale.goodsId;
  startsAt = sale.startAt;
  server = await startServer(env(), `${base}/healthz`);
  // a second edge of the same sale that refuses every event stream (its cap at 0)
  const port2 = await freePort();
  refusingBase = `http://127.0.0.1:${port2}`;
  refusing = await startServer({ ...env(), FLASHGATE_LISTEN: `127.0.0.1:${port2}`,
    FLASHGATE_ADMIN_LISTEN: "off", FLASHGATE_PUSH_MAX_CONNECTIONS: "0" }, `${refusingBase}/healthz`);
  // and a third whose room takes a proof of work
  const port3 = await freePort();
  provingBase = `http://127.0.0.1:${port3}`;
  proving = await startServer({ ...env(), FLASHGATE_LISTEN: `127.0.0.1:${port3}`,
    FLASHGATE_ADMIN_LISTEN: "off", FLASHGATE_ROOM_POW: "on" }, `${provingBase}/healthz`);
  browser = await launchBrowser();
});

after(async () => {
  refusing?.kill("SIGKILL");
  proving?.kill("SIGKILL");
  await cleanUp({ browser, server, db, ns });
});

async function shopperPage(token) {
  const ctx = await browser.newContext({ viewport: { width: 420, height: 900 } });
  await ctx.addCookies([{ name: "token", value: token, url: base }]);
  return { ctx, page: await ctx.newPage() };
}

const roomState = (page) => page.$eval("#room-state", (e) => e.dataset.state || "");

test("in the room before the start, then a latecomer moves up, is let through and buys", async () => {
  // an early shopper in the browser, and EARLY more through the API
  const early = await shopperPage(tokens[0]);
  await early.page.goto(`${base}/goods.html?id=${goods}`);
  await early.page.waitForFunction(() => document.querySelector("#room-state").dataset.state === "in_room");
  assert.match(await early.page.textContent("#room-state"), /You are in the waiting room/);
  assert.equal(await early.page.isVisible("#buy"), false, "no buy button before the turn");
  await shot(early.page, "in-room-before-the-start");
  await Promise.all(tokens.slice(2, EARLY + 6).map((t) => fetch(`${base}/api/seckill/room`, {
    method: "POST",
    headers: { Authorization: `Bearer ${t}`, "Content-Type": "application/json" },
    body: JSON.stringify({ goodsId: goods }),
  })));

  // the latecomer opens the page after the start: behind all EARLY + 1 who were in the room
  await new Promise((r) => setTimeout(r, Math.max(0, startsAt - Date.now()) + 200));
  const late = await shopperPage(tokens[1]);
  // what the page asks for: one event stream, and no polls of the room while it is up
  let roomPolls = 0, streams = 0;
  late.page.on("request", (r) => {
    if (r.url().includes("/api/seckill/room") && r.method() === "GET") roomPolls += 1;
    if (r.url().includes("/api/seckill/events")) streams += 1;
  });
  await late.page.goto(`${base}/goods.html?id=${goods}`);
  await late.page.waitForFunction(() => document.querySelector("#room-state").dataset.state === "waiting");
  const positions = [];
  let taken = 0;
  for (let i = 0; i < 200; i++) {
    const state = await roomState(late.page);
    if (state === "through") break;
    const pos = Number(await late.page.$eval("#room-state", (e) => e.dataset.position));
    if (!positions.length || pos !== positions[positions.length - 1]) {
      positions.push(pos);
      if (taken < 2 && positions.length % 3 === 1) { await shot(late.page, `waiting-position-${pos}`); taken += 1; }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(positions.length >= 3, `the position moved up: ${positions}`);
  assert.ok(positions[0] >= 20, `a latecomer starts behind the room: ${positions}`);
  for (let i = 1; i < positions.length; i++) assert.ok(positions[i] < positions[i - 1], `went backwards: ${positions}`);

  assert.equal(streams, 1, "one event stream");
  assert.equal(roomPolls, 0, "the position moved by push, not by polling");
  await late.page.waitForSelector("#buy:not([disabled])", { timeout: 20000 });
  assert.match(await late.page.textContent("#room-state"), /your turn/);
  await shot(late.page, "let-through");
  await late.page.fill("#answer", "0");
  await late.page.click("#buy");
  await late.page.waitForSelector("#order-link", { timeout: 15000 });
  await shot(late.page, "bought");
  // the early shopper was let through too, earlier (the whole room went before the latecomer)
  assert.equal(await roomState(early.page), "through");
  await early.ctx.close();
  await late.ctx.close();
});

test("an edge that refuses the event stream: the page polls the room instead", async () => {
  // a slow line (a ticket every 10 s) with three shoppers ahead, so this one waits
  const slow = JSON.parse(fg("sale", "create", "--starts-in", "0", "--lasts", "3600", "--json", JSON.stringify({
    name: "Slow phone", title: "A slow line", price: 999, salePrice: 1, stock: 50,
    pathFactor: 10, roomOpensBefore: 600, roomRate: 0.1,
  }))).goodsId;
  for (const t of tokens.slice(EARLY + 3, EARLY + 6)) {
    await fetch(`${base}/api/seckill/room`, {
      method: "POST",
      headers: { Authorization: `Bearer ${t}`, "Content-Type": "application/json" },
      body: JSON.stringify({ goodsId: slow }),
    });
  }
  const shopper = await browser.newContext({ viewport: { width: 420, height: 900 } });
  await shopper.addCookies([{ name: "token", value: tokens[EARLY + 2], url: refusingBase }]);
  const page = await shopper.newPage();
  let roomPolls = 0, refused = 0;
  page.on("response", (r) => {
    if (r.url().includes("/api/seckill/events") && r.status() === 503) refused += 1;
    if (r.url().includes("/api/seckill/room") && r.request().method() === "GET") roomPolls += 1;
  });
  await page.goto(`${refusingBase}/goods.html?id=${slow}`);
  await page.waitForFunction(() => document.querySelector("#room-state").dataset.state === "waiting");
  for (let i = 0; i < 50 && (roomPolls < 2 || refused < 1); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(refused >= 1, "the stream was refused");
  assert.ok(roomPolls >= 2, `the page polled the room: ${roomPolls}`);
  await shot(page, "polling-without-a-stream");
  await shopper.close();
});

test("a Chinese shopper's waiting room: before the start, in line, let through", async () => {
  const zh = screenshots("room-zh", { axe: true });
  const sale = (startsIn, rate) => JSON.parse(fg("sale", "create", "--starts-in", String(startsIn), "--lasts", "3600", "--json", JSON.stringify({
    name: "Fair phone", title: "A phone, sold fairly", price: 999, salePrice: 1, stock: 50,
    pathFactor: 10, roomOpensBefore: 600, roomRate: rate,
  }))).goodsId;
  const later = sale(600, 50), slow = sale(0, 0.1), open = sale(0, 50);
  // three shoppers ahead in the slow line
  for (const t of tokens.slice(EARLY + 3, EARLY + 6)) {
    await fetch(`${base}/api/seckill/room`, {
      method: "POST",
      headers: { Authorization: `Bearer ${t}`, "Content-Type": "application/json" },
      body: JSON.stringify({ goodsId: slow }),
    });
  }
  const ctx = await browser.newContext({ locale: "zh-CN", viewport: { width: 420, height: 900 } });
  await ctx.addCookies([{ name: "token", value: tokens[EARLY + 2], url: base }]);
  const page = await ctx.newPage();
  for (const [goods, state, name] of [[later, "in_room", "in-room"], [slow, "waiting", "in-line"], [open, "through", "let-through"]]) {
    await page.goto(`${base}/goods.html?id=${goods}`);
    await page.waitForFunction((s) => document.querySelector("#room-state").dataset.state === s, state);
    await page.waitForFunction(() => document.documentElement.lang === "zh-CN");
    assert.deepEqual(await englishOnScreen(page, false), [], `English words in the room (${state})`);
    await zh(page, name);
  }
  await ctx.close();
});

test("a room that takes a proof of work: the page solves it in its worker and joins", async () => {
  const ctx = await browser.newContext({ viewport: { width: 420, height: 900 } });
  const token = tokens[EARLY + 6];
  await ctx.addCookies([{ name: "token", value: token, url: provingBase }]);
  const page = await ctx.newPage();
  const joins = [];
  page.on("request", (r) => {
    if (r.url().endsWith("/api/seckill/room") && r.method() === "POST") joins.push(JSON.parse(r.postData()));
  });
  await page.goto(`${provingBase}/goods.html?id=${goods}`);
  await page.waitForFunction(() => ["in_room", "waiting", "through"].includes(document.querySelector("#room-state").dataset.state), null, { timeout: 30000 });
  assert.equal(joins[0].proof, undefined, "the first join is sent without a proof");
  assert.ok(joins.some((j) => typeof j.proof === "string" && j.proof.length > 0), "no join carried a proof");
  const r = await (await fetch(`${provingBase}/api/seckill/room?goodsId=${goods}`, { headers: { Authorization: `Bearer ${token}` } })).json();
  assert.notEqual(r.data.state, "no_ticket", "the proven join made no ticket");
  await shot(page, "proof-of-work-joined");
  await ctx.close();
});
