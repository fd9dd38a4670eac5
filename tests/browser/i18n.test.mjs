// The shoppers' pages in two languages (public/i18n/*.json, public/js/i18n.js).
//
// Without a browser: every catalogue parses, has exactly English's keys, the same placeholders
// in each message, an "other" form in each plural; every key the pages name exists.
// In headless Chromium against a real `flashgate all`: a shopper whose browser asks for Chinese
// logs in, sees the list, buys, is refused a second time and opens the order, every page in Chinese (<html lang="zh-CN">,
// no English word on screen but the brand and the switch's "English"; screenshots
// shopper-zh-*.png); the switch turns the pages to English and is remembered; a browser asking
// for a language we do not have gets English; the whole buy can be done with the keyboard alone.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { root, shots, freePort, startServer, launchBrowser, cleanUp, screenshots, englishOnScreen, sandbox } from "./harness.mjs";

const dir = path.join(root, "public/i18n");
const catalogue = (name) => JSON.parse(readFileSync(path.join(dir, name), "utf8"));
const placeholders = (v) =>
  [...new Set((typeof v === "string" ? [v] : Object.values(v)).flatMap((s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1])))].sort();

test("every catalogue has English's keys, placeholders and plural forms", () => {
  const en = catalogue("en.json");
  const files = readdirSync(dir).filter((f) => f.endsWith(".json"));
  assert.ok(files.includes("zh-CN.json"), "a Chinese catalogue");
  for (const f of files) {
    const c = catalogue(f); // throws on malformed JSON
    assert.deepEqual(Object.keys(c).sort(), Object.keys(en).sort(), `${f}: the keys differ from en.json`);
    for (const [k, v] of Object.entries(c)) {
      assert.ok(typeof v === "string" || (typeof v === "object" && typeof v.other === "string"), `${f}: ${k}`);
      // a plural form may leave {n} out ("a minute"), so compare what the forms use together
      const theirs = placeholders(v).filter((p) => p !== "n");
      const ours = placeholders(en[k]).filter((p) => p !== "n");
      assert.deepEqual(theirs, ours, `${f}: ${k} has other placeholders than in en.json`);
    }
  }
});

test("every key the shoppers' pages name is in the catalogue", () => {
  const en = catalogue("en.json");
  const pub = path.join(root, "public");
  const used = new Set();
  for (const f of readdirSync(pub).filter((f) => f.endsWith(".html") && f !== "admin.html")) {
    const html = readFileSync(path.join(pub, f), "utf8");
    for (const m of html.matchAll(/data-i18n="([^"]+)"/g)) used.add(m[1]);
    for (const m of html.matchAll(/data-i18n-attr="([^"]+)"/g)) {
      for (const pair of m[1].split(",")) used.add(pair.split(":")[1].trim());
    }
  }
  for (const f of readdirSync(path.join(pub, "js")).filter((f) => f !== "admin.js")) {
    const js = readFileSync(path.join(pub, "js", f), "utf8");
    for (const m of js.matchAll(/I18n\.(?:t|has)\("([^"]+)"/g)) used.add(m[1]);
  }
  assert.ok(used.size > 40, `only ${used.size} keys found: is the scan still right?`);
  const missing = [...used].filter((k) => !(k in en));
  assert.deepEqual(missing, [], "keys used but missing from en.json");
});

const { ns, db, env, fg, redis, sql } = sandbox("i18n");
let server, browser, base, goods;
const shot = screenshots("shopper-zh", { axe: true });

before(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  fg(port, "migrate");
  goods = fg(port, "seed", "--stock", "2", "--starts-in", "0", "--lasts", "3600").trim().split("\n").pop();
  fg(port, "users", "--count", "2", "--out", path.join(shots, "i18n-tokens.csv"));
  server = await startServer(env(port), `${base}/healthz`);
  browser = await launchBrowser();
});

after(() => cleanUp({ browser, server, db, ns }));

// (the sale page's title is the sale's name: data, left out)
async function inChinese(page, name, withTitle = true) {
  await page.waitForFunction(() => document.documentElement.lang === "zh-CN");
  assert.deepEqual(await englishOnScreen(page, withTitle), [], `English words on the ${name} page`);
  await shot(page, name);
}

test("a shopper whose browser asks for Chinese buys in Chinese, and the switch is remembered", async () => {
  const ctx = await browser.newContext({ locale: "zh-CN", viewport: { width: 420, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(`${base}/login.html`);
  await inChinese(page, "login");
  await page.fill("#mobile", sql("SELECT mobile FROM users ORDER BY id LIMIT 1"));
  await page.fill("#password", "123456");
  await page.click("#submit");
  await page.waitForURL(`${base}/`);
  await page.waitForSelector("a.goods");
  await inChinese(page, "list");
  assert.equal((await page.textContent("header a:last-child")).trim(), "退出登录");

  await page.goto(`${base}/goods.html?id=${goods}`);
  await page.waitForFunction(() => document.querySelector("#state").textContent !== "");
  await page.waitForFunction(() => !document.querySelector("#buy").disabled);
  await inChinese(page, "sale", false);
  const user = sql("SELECT id FROM users ORDER BY id LIMIT 1");
  await page.waitForFunction(() => document.querySelector("#captcha").naturalWidth > 0);
  const answer = redis("GET", `${ns}sk:{g:${goods}}:captcha:${user}`);
  await page.fill("#answer", answer);
  await page.click("#buy");
  await page.waitForSelector("#order-link");
  await inChinese(page, "ordered", false);
  // a second press: a new captcha, then refused as a duplicate
  const shown = await page.getAttribute("#captcha", "src");
  await page.click("#new-captcha");
  await page.waitForFunction((b) => document.querySelector("#captcha").getAttribute("src") !== b, shown);
  await page.waitForFunction(() => document.querySelector("#captcha").naturalWidth > 0);
  await page.fill("#answer", redis("GET", `${ns}sk:{g:${goods}}:captcha:${user}`));
  await page.click("#buy");
  await page.waitForFunction(() => /已经购买/.test(document.querySelector("#msg").textContent));
  await inChinese(page, "duplicate-refused", false);
  await page.click("#order-link");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "待支付");
  await inChinese(page, "order");

  // the switch: English, and it stays English on the next page
  await page.click("#lang");
  await page.waitForFunction(() => document.documentElement.lang === "en");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "Unpaid");
  await page.goto(`${base}/`);
  await page.waitForFunction(() => document.documentElement.lang === "en");
  assert.equal((await page.textContent("h1")).trim(), "Flash sales");
  await ctx.close();
});

test("a browser asking for a language we do not have, for none, or for junk gets English", async () => {
  for (const languages of [["xx-YY"], [], ["x".repeat(10000), "", "zz"]]) {
    const ctx = await browser.newContext({ locale: "xx-YY" });
    await ctx.addInitScript((l) => Object.defineProperty(navigator, "languages", { get: () => l }), languages);
    const page = await ctx.newPage();
    await page.goto(`${base}/`);
    await page.waitForSelector("#lang");
    assert.equal(await page.evaluate(() => document.documentElement.lang), "en", JSON.stringify(languages).slice(0, 40));
    assert.equal((await page.textContent("h1")).trim(), "Flash sales");
    await ctx.close();
  }
});

test("a sale not started yet counts down, in both languages", async () => {
  const port = new URL(base).port;
  const later = fg(port, "seed", "--stock", "5", "--starts-in", "600", "--lasts", "3600").trim().split("\n").pop();
  for (const [locale, want, prefix] of [["en-US", /^Starts in \d+ s$/, "shopper-en"], ["zh-CN", /^\d+ 秒后开始$/, "shopper-zh"]]) {
    const ctx = await browser.newContext({ locale, viewport: { width: 420, height: 800 } });
    const page = await ctx.newPage();
    await page.goto(`${base}/goods.html?id=${later}`);
    await page.waitForFunction((re) => new RegExp(re).test(document.querySelector("#state").textContent), want.source);
    assert.equal(await page.isDisabled("#buy"), true, "no buying before the start");
    await screenshots(`${prefix}-countdown`, { axe: true })(page, "countdown");
    await ctx.close();
  }
});

test("a sale's limit per customer and its quantity picker, in both languages", async () => {
  const port = new URL(base).port;
  const limited = fg(port, "seed", "--stock", "5", "--starts-in", "600", "--lasts", "3600",
    "--per-buy", "2", "--per-account", "2").trim().split("\n").pop();
  for (const [locale, want, prefix] of [["en-US", "Limit 2 per customer", "shopper-en"], ["zh-CN", "每人限购 2 件", "shopper-zh"]]) {
    const ctx = await browser.newContext({ locale, viewport: { width: 420, height: 800 } });
    const page = await ctx.newPage();
    await page.goto(`${base}/goods.html?id=${limited}`);
    await page.waitForFunction((w) => document.querySelector("#limit").textContent === w, want);
    assert.equal(await page.getAttribute("#quantity", "max"), "2", "the picker offers up to perBuy");
    await screenshots(`${prefix}-limit`, { axe: true })(page, "limit");
    await ctx.close();
  }
});

// Presses Tab until the element matching `selector` has the focus (at most 25 presses).
async function tabTo(page, selector) {
  for (let i = 0; i < 25; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate((s) => document.activeElement && document.activeElement.matches(s), selector)) return;
  }
  assert.fail(`Tab never reached ${selector}`);
}

test("the whole buy with the keyboard alone, its outcome announced to screen readers", async () => {
  const ctx = await browser.newContext({ locale: "en-US", viewport: { width: 420, height: 800 } });
  const page = await ctx.newPage();
  const kbd = screenshots("shopper-en-keyboard", { axe: true });
  await page.goto(`${base}/login.html`);
  await tabTo(page, "#mobile");
  await page.keyboard.type(sql("SELECT mobile FROM users ORDER BY id DESC LIMIT 1"));
  await tabTo(page, "#password");
  await page.keyboard.type("123456");
  await page.keyboard.press("Enter");
  await page.waitForURL(`${base}/`);
  await page.waitForSelector("a.goods");
  await tabTo(page, "a.goods");
  await page.keyboard.press("Enter");
  await page.waitForURL(/goods\.html/);
  await page.waitForFunction(() => !document.querySelector("#buy").disabled);
  // the state, the messages and the waiting room's line are live regions
  for (const id of ["#state", "#msg", "#room-state"]) {
    assert.equal(await page.getAttribute(id, "aria-live"), "polite", `${id} is announced`);
  }
  // a new captcha by keyboard; its text alternative is not its answer
  await page.waitForFunction(() => document.querySelector("#captcha").naturalWidth > 0);
  await tabTo(page, "#new-captcha");
  const before = await page.getAttribute("#captcha", "src");
  await page.keyboard.press("Enter");
  await page.waitForFunction((b) => document.querySelector("#captcha").getAttribute("src") !== b, before);
  await page.waitForFunction(() => document.querySelector("#captcha").naturalWidth > 0);
  const user = sql("SELECT id FROM users ORDER BY id DESC LIMIT 1");
  const answer = redis("GET", `${ns}sk:{g:${goods}}:captcha:${user}`);
  assert.ok(!(await page.getAttribute("#captcha", "alt")).includes(answer), "the alt text gives the answer away");
  await kbd(page, "captcha");
  await tabTo(page, "#answer");
  await page.keyboard.type(answer);
  await tabTo(page, "#buy");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#order-link");
  await kbd(page, "ordered");
  await tabTo(page, "#order-link");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "Unpaid");
  await tabTo(page, "#pay");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#status").textContent === "Paid");
  await kbd(page, "paid");
  await ctx.close();
});

test("in Chinese too: a logged-out visitor told why, and the sale sold out", async () => {
  // (after the tests above bought both units)
  const ctx = await browser.newContext({ locale: "zh-CN", viewport: { width: 420, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(`${base}/goods.html?id=${goods}`);
  await page.waitForSelector("#login-to-buy");
  await inChinese(page, "logged-out-sale-page", false);
  await page.goto(`${base}/login.html`);
  await page.fill("#mobile", sql("SELECT mobile FROM users ORDER BY id LIMIT 1"));
  await page.fill("#password", "123456");
  await page.click("#submit");
  await page.waitForURL(`${base}/`);
  await page.goto(`${base}/goods.html?id=${goods}`);
  await page.waitForFunction(() => document.querySelector("#state").textContent === "已售罄");
  assert.equal(await page.isDisabled("#buy"), true, "no buying a sold-out sale");
  await inChinese(page, "sold-out", false);
  await ctx.close();
});
