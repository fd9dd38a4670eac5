// The operators' console (public/admin.html) end to end in headless Chromium against a real
// `flashgate all`: the token is asked for (a wrong one refused), a sale is created through the
// form (a validation error first, shown beside its field), then watched live while a scripted
// burst of shoppers buys it out: stock to zero, orders written, the chart drawn, the audit clean.
// The console is not on the public listener. Then the Scripts view: a tuned set released as a
// canary with `flashgate lua release`, its share and counts shown beside the live version's while
// shoppers buy, promoted, then rolled back, each from its button. Each step's screenshot goes to
// target/test-output/browser/ (console-*.png).
//
// Needs what shopper.test.mjs needs (FLASHGATE_BIN, the local services, CHROMIUM).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, cpSync, writeFileSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { root, bin, shots, freePort, startServer, launchBrowser, cleanUp, screenshots } from "./harness.mjs";

const id = randomBytes(6).toString("hex");
const ns = `con${id}:`;
const db = `fg_con_${id}`;
const token = randomBytes(24).toString("hex");
const SHOPPERS = 60;
const STOCK = 25;

let server, browser, base, admin;


let ports;
function env() {
  return {
    ...process.env,
    FLASHGATE_DATABASE_URL: `mysql://root@127.0.0.1:3306/${db}`,
    FLASHGATE_NAMESPACE: ns,
    FLASHGATE_LISTEN: `127.0.0.1:${ports[0]}`,
    FLASHGATE_ADMIN_LISTEN: `127.0.0.1:${ports[1]}`,
    FLASHGATE_ADMIN_TOKEN: token,
    FLASHGATE_CAPTCHA: "off",
    FLASHGATE_PUBLIC_DIR: path.join(root, "public"),
    FLASHGATE_LOG: "warn",
  };
}

const fg = (...args) => execFileSync(bin, args, { env: env(), encoding: "utf8" });

const shot = screenshots("console");

before(async () => {
  ports = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${ports[0]}`;
  admin = `http://127.0.0.1:${ports[1]}`;
  fg("migrate");
  fg("users", "--count", String(SHOPPERS), "--out", path.join(shots, "console-tokens.csv"));
  server = await startServer(env(), `${admin}/healthz`);
  browser = await launchBrowser();
});

after(() => cleanUp({ browser, server, db, ns }));

// Every shopper asks for a path and buys once, all at the same time, on the public listener.
async function burst(goods) {
  const tokens = readFileSync(path.join(shots, "console-tokens.csv"), "utf8")
    .trim().split("\n").slice(1).map((l) => l.split(",")[1]);
  const one = async (t) => {
    const auth = { Authorization: `Bearer ${t}` };
    const p = await fetch(`${base}/api/seckill/path?goodsId=${goods}`, { headers: auth });
    if (p.status !== 200) return p.status;
    const hidden = (await p.json()).data;
    const b = await fetch(`${base}/api/seckill/${hidden}/orders`, {
      method: "POST",
      headers: { ...auth, "Content-Type": "application/json" },
      body: JSON.stringify({ goodsId: Number(goods) }),
    });
    return b.status;
  };
  return Promise.all(tokens.map(one));
}

test("the console is on the admin listener only", async () => {
  assert.equal((await fetch(`${base}/admin.html`)).status, 404);
  assert.equal((await fetch(`${base}/js/admin.js`)).status, 404);
  assert.equal((await fetch(`${admin}/admin.html`)).status, 200);
});

test("log in with the token, create a sale through the form, watch it sell out live", async () => {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await ctx.newPage();
  await page.goto(`${admin}/admin.html`);
  await page.waitForSelector("#token");
  await page.fill("#token", "not-the-token");
  await page.click("#enter");
  await page.waitForSelector("#login-msg:not(.hidden)");
  assert.match(await page.textContent("#login-msg"), /not the admin token/);
  await shot(page, "wrong-token");
  await page.fill("#token", token);
  await page.click("#enter");
  await page.waitForSelector("#sales:not(.hidden)");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("flashgate-admin-token") !== null), true);
  await shot(page, "sale-list-empty");

  // the form: a sale price above the price is refused with the API's message, at its field
  await page.click("#new");
  await page.fill("#f-name", "Console phone");
  await page.fill("#f-title", "A phone sold from the console");
  await page.fill("#f-price", "999");
  await page.fill("#f-salePrice", "1999");
  await page.fill("#f-stock", String(STOCK));
  await page.fill("#f-shards", "2");
  await page.evaluate(() => {
    const local = (t) => new Date(t - new Date(t).getTimezoneOffset() * 60000).toISOString().slice(0, 19);
    document.getElementById("f-startAt").value = local(Date.now() - 60000);
    document.getElementById("f-endAt").value = local(Date.now() + 3600000);
  });
  await page.click("#save");
  await page.waitForSelector("#form-msg:not(.hidden)");
  assert.match(await page.textContent("#form-msg"), /salePrice must not be above price \(code 500706\)/);
  assert.equal(await page.$eval("#f-salePrice", (e) => e.classList.contains("invalid")), true);
  await shot(page, "validation-error");

  await page.fill("#f-salePrice", "1");
  await page.click("#save");
  await page.waitForSelector("#live:not(.hidden)");
  await page.waitForFunction(() => document.querySelector("#live-phase").textContent === "live");
  const goods = (await page.textContent("#live-title")).split(" ")[0];
  assert.match(goods, /^\d+$/);
  await page.waitForSelector("#chart .u-over"); // uPlot drew its canvas
  await shot(page, "sale-created-live");

  // the burst, while the console watches
  const statuses = await burst(goods);
  assert.equal(statuses.filter((s) => s === 202).length, STOCK, `statuses: ${statuses}`);
  await page.waitForFunction((n) => document.querySelector("#live-phase").textContent === "sold out"
      && document.querySelector('[data-figure="Orders written"]').textContent.startsWith(`${n} `),
    STOCK, { timeout: 20000 });
  assert.match(await page.textContent('[data-figure="Stock"]'), new RegExp(`^0 left of ${STOCK}$`));
  // where this edge writes in Redis (a failover, and replica confirmation, would show here too)
  assert.match(await page.textContent('[data-figure="Redis"]'), /^single, primary 127\.0\.0\.1:\d+$/);
  assert.equal((await page.$$("#shards .shard")).length, 2);
  // the chart's admitted line has the burst in it (counts reach Redis within a second or two)
  let admitted = 0;
  for (let i = 0; i < 20 && admitted !== STOCK; i++) {
    await new Promise((r) => setTimeout(r, 300));
    admitted = await page.evaluate(async (g) => {
      const r = await fetch(`/api/admin/sales/${g}/series?seconds=120`, {
        headers: { Authorization: `Bearer ${sessionStorage.getItem("flashgate-admin-token")}` },
      });
      return (await r.json()).data.series.queued.reduce((a, b) => a + b, 0);
    }, goods);
  }
  assert.equal(admitted, STOCK, "the chart's data: every admission counted once");
  // the audit, refreshed every 5 s, proves every unit: none left in Redis, one order each
  await page.waitForFunction((n) => document.querySelector("#audit").textContent
    .startsWith(`Clean: initial ${n} = Redis 0 + orders ${n}`), STOCK, { timeout: 15000 });
  await shot(page, "sold-out-live-view");

  // back to the list: the sale with its phase and a full progress bar
  await page.click("#back");
  await page.waitForFunction((g) => {
    const row = document.querySelector(`tr[data-goods="${g}"]`);
    return row && /sold out/.test(row.textContent);
  }, goods);
  await shot(page, "sale-list-sold-out");
  await ctx.close();
});

test("the Scripts view: a release as a canary, its counts beside the live one's, promote, roll back", async () => {
  // an SRE's tuned set: the shipped scripts, admit.lua's queue entry carrying one more field
  const dir = path.join(shots, `console-lua-${id}`);
  cpSync(path.join(root, "lua"), dir, { recursive: true });
  rmSync(path.join(dir, "cases"), { recursive: true, force: true });
  const admit = readFileSync(path.join(dir, "admit.lua"), "utf8");
  const tuned = admit.replace("'t', now)", "'t', now, 'tuned', '1')");
  assert.notEqual(tuned, admit);
  writeFileSync(path.join(dir, "admit.lua"), tuned);
  const out = fg("lua", "release", dir, "--note", "entries carry tuned", "--canary", "30");
  assert.match(out, /released version 1 .* as a canary deciding 30% of admission calls/);
  const goods = fg("seed", "--stock", "1000", "--starts-in", "0", "--lasts", "600").trim().split("\n").pop();

  const ctx = await browser.newContext({ viewport: { width: 1300, height: 900 } });
  const page = await ctx.newPage();
  page.on("dialog", (d) => d.accept());
  await page.goto(`${admin}/admin.html`);
  await page.fill("#token", token);
  await page.click("#enter");
  await page.waitForSelector("#sales:not(.hidden)");
  await page.click("#to-scripts");
  await page.waitForSelector("#scripts:not(.hidden)");
  await page.waitForFunction(() => /canary: version 1 deciding 30%/.test(document.querySelector("#lua-live").textContent));
  assert.match(await page.textContent('tr[data-version="1"]'), /canary 30%.*entries carry tuned/);
  // shoppers buy: both versions decide calls, and the edge reports each one's counts (a sale
  // of its own each round: a shopper's second buy of a sale is answered by the edge's buyer
  // marks, without a call)
  for (let round = 0; round < 3; round++) {
    await burst(round === 0 ? goods : fg("seed", "--stock", "1000", "--starts-in", "0", "--lasts", "600").trim().split("\n").pop());
  }
  await page.waitForFunction(() => {
    const calls = (v) => Number(document.querySelector(`tr[data-version="${v}"] td:nth-child(6)`)?.textContent || 0);
    return calls(0) > 0 && calls(1) > 0;
  }, null, { timeout: 10000 });
  const calls = async (v) => Number(await page.textContent(`tr[data-version="${v}"] td:nth-child(6)`));
  const [c0, c1] = [await calls(0), await calls(1)];
  assert.ok(c1 < c0, `the canary decided fewer calls than the live version: ${c1} vs ${c0}`);
  assert.match(await page.textContent("#lua-edges"), /0 \+ canary 1 \(30%\)\s*current/);
  await shot(page, "scripts-canary");

  await page.click("#lua-promote");
  await page.waitForFunction(() => /Live: version 1; no canary/.test(document.querySelector("#lua-live").textContent));
  await page.waitForFunction(() => /^1\s*current/.test(document.querySelector("#lua-edges td:nth-child(2)").textContent
    + document.querySelector("#lua-edges td:nth-child(3)").textContent));
  assert.match(await page.textContent('tr[data-version="1"]'), /live/);
  assert.equal(await page.$eval("#lua-promote", (b) => b.disabled), true);
  await shot(page, "scripts-promoted");

  await page.click("#lua-rollback");
  await page.waitForFunction(() => /Live: version 0; no canary/.test(document.querySelector("#lua-live").textContent));
  assert.match(await page.textContent('tr[data-version="0"]'), /live/);
  await page.waitForFunction(() => /^0\s*current/.test(document.querySelector("#lua-edges td:nth-child(2)").textContent
    + document.querySelector("#lua-edges td:nth-child(3)").textContent));
  // nothing earlier than the built-in set: the API's refusal is shown
  await page.click("#lua-rollback");
  await page.waitForSelector("#lua-msg:not(.hidden)");
  assert.match(await page.textContent("#lua-msg"), /no earlier version to roll back to/);
  await shot(page, "scripts-rolled-back");
  assert.match(fg("lua", "status"), /^live: version 0/);
  rmSync(dir, { recursive: true, force: true });
  await ctx.close();
});
