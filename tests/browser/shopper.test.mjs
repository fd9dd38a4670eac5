// The shopper's pages, end to end in headless Chromium against a real `flashgate all`:
// log in, open a running sale, solve the captcha (answer read from Redis), buy, see "queued",
// then the order page and pay; a second buy shows the duplicate message; another shopper sees
// the sale sold out. Each step's screenshot goes to target/test-output/browser/ (shopper-en-*.png).
//
// Needs: the flashgate binary (FLASHGATE_BIN, default target/debug/flashgate), the local services,
// redis-cli and mariadb on PATH, Chromium at CHROMIUM (default /usr/bin/chromium).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { shots, freePort, startServer, launchBrowser, cleanUp, screenshots, sandbox } from "./harness.mjs";

const { ns, db, env, fg, redis, sql } = sandbox("e2e");

let server, browser, base, goods;
const shot = screenshots("shopper-en", { axe: true });

before(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  fg(port, "migrate");
  goods = fg(port, "seed", "--stock", "2", "--starts-in", "0", "--lasts", "3600").trim().split("\n").pop();
  fg(port, "users", "--count", "2", "--out", path.join(shots, "tokens.csv"));
  server = await startServer(env(port), `${base}/healthz`);
  browser = await launchBrowser();
});

after(() => cleanUp({ browser, server, db, ns }));

async function login(page, userId) {
  const mobile = sql(`SELECT mobile FROM users WHERE id = ${userId}`);
  await page.goto(`${base}/login.html`);
  await page.fill("#mobile", mobile);
  await page.fill("#password", "123456");
  await shot(page, `login-user${userId}`);
  await page.click("#submit");
  await page.waitForURL(`${base}/`);
  await page.waitForSelector("a.goods");
  assert.equal((await page.textContent("header a:last-child")).trim(), "Log out", "logged in, the list offers Log out");
}

async function solveCaptcha(page, userId) {
  const key = `${ns}sk:{g:${goods}}:captcha:${userId}`;
  redis("del", key);
  await page.click("#captcha"); // a fresh captcha: its answer is now in Redis
  let answer = "";
  for (let i = 0; i < 50 && !answer; i++) {
    answer = redis("get", key);
    if (!answer) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(answer, "the captcha answer never reached Redis");
  await page.fill("#answer", answer);
}

test("a shopper buys, pays, cannot buy twice; the last unit goes and the sale shows sold out", async () => {
  const ctx = await browser.newContext({ viewport: { width: 420, height: 800 } });
  const page = await ctx.newPage();
  await login(page, 1);
  await shot(page, "sale-list");

  await page.goto(`${base}/goods.html?id=${goods}`);
  await page.waitForSelector("#buy:not([disabled])");
  const captcha = await page.$eval("#captcha", (img) => img.complete && img.naturalWidth);
  assert.ok(captcha > 0, "the captcha image did not render");
  await solveCaptcha(page, 1);
  await shot(page, "sale-page-captcha-solved");
  await page.click("#buy");
  // queued first (the worker answers within a poll or two), then the order link
  await page.waitForFunction(() => /Queued|Success/.test(document.querySelector("#msg").textContent));
  await shot(page, "queued-or-placed");
  await page.waitForSelector("#order-link", { timeout: 15000 });
  await shot(page, "order-placed");

  await page.click("#order-link");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "Unpaid");
  await shot(page, "order-page");
  await page.click("#pay");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "Paid");
  await shot(page, "order-paid");

  // the same shopper again: the duplicate message, with the way to the order
  await page.goto(`${base}/goods.html?id=${goods}`);
  await page.waitForSelector("#buy:not([disabled])");
  await solveCaptcha(page, 1);
  await page.click("#buy");
  await page.waitForFunction(() => /already bought/.test(document.querySelector("#msg").textContent));
  assert.ok(await page.$("#order-link"), "the duplicate message links to the order");
  await shot(page, "duplicate-refused");
  await ctx.close();

  // a second shopper takes the last unit; then the sale shows sold out
  const ctx2 = await browser.newContext({ viewport: { width: 420, height: 800 } });
  const page2 = await ctx2.newPage();
  await login(page2, 2);
  await page2.goto(`${base}/goods.html?id=${goods}`);
  await page2.waitForSelector("#buy:not([disabled])");
  await solveCaptcha(page2, 2);
  await page2.click("#buy");
  await page2.waitForSelector("#order-link", { timeout: 15000 });
  await page2.reload();
  await page2.waitForFunction(() => document.querySelector("#state").textContent === "Sold out");
  assert.equal(await page2.isDisabled("#buy"), true);
  await shot(page2, "sold-out");
  await ctx2.close();
});

test("logged out, the sale page shows no broken captcha but why and a way to log in", async () => {
  const ctx = await browser.newContext({ viewport: { width: 420, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(`${base}/goods.html?id=${goods}`);
  await page.waitForSelector("#login-to-buy");
  assert.match(await page.textContent("#msg"), /log in first/i);
  assert.equal(await page.isVisible("#captcha"), false, "a broken captcha image is shown");
  assert.equal(await page.isVisible("#captcha-label"), false, "the captcha's label is shown with no image under it");
  await shot(page, "logged-out-sale-page");
  await page.click("#login-to-buy");
  await page.waitForSelector("form#login");
  assert.match(page.url(), /\/login\.html\?next=%2Fgoods\.html/);
  await ctx.close();
});

test("logged out, the sale list offers Log in, not Log out", async () => {
  const ctx = await browser.newContext({ viewport: { width: 420, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(`${base}/`);
  await page.waitForSelector("a.goods");
  assert.equal((await page.textContent("header a:last-child")).trim(), "Log in");
  await shot(page, "logged-out-sale-list");
  await page.click("header a:last-child");
  await page.waitForSelector("form#login");
  await ctx.close();
});

test("too many wrong passwords: the login page says plainly that it is paused and for how long", async () => {
  const ctx = await browser.newContext({ viewport: { width: 420, height: 800 } });
  const page = await ctx.newPage();
  const mobile = sql("SELECT mobile FROM users WHERE id = 2");
  // every login counts against the mobile, the good ones too: this shopper's earlier logins in
  // this file are forgotten first, so the count starts here
  redis("del", `${ns}login:fail:m:${mobile}`);
  await page.goto(`${base}/login.html`);
  await page.fill("#mobile", mobile);
  // five wrong passwords are refused one by one; the sixth try is paused (429)
  const statuses = [];
  for (let i = 0; i < 6; i++) {
    await page.fill("#password", `wrong-${i}`);
    const [resp] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith("/api/login")),
      page.click("#submit"),
    ]);
    statuses.push(resp.status());
    await page.waitForSelector("#submit:not([disabled])");
  }
  assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429]);
  assert.match(await page.textContent("#msg"), /Too many failed logins.*try again in/);
  await shot(page, "login-throttled");
  await ctx.close();
});
