// In front of a shop (docs/integration.md), in headless Chromium against a real `flashgate all`
// with FLASHGATE_AUTH=jwt: a pretend shop on a free port serves its key set (JWKS) and a
// checkout page; the shopper comes with the shop's JWT in the shop's cookie, buys, and the page
// sends them to the shop's checkout with a grant, which the test verifies with the Node.js
// verifier printed in docs/integration.md against flashgate's /.well-known/jwks.json. The same
// verifier is held against the documented test vector.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { root, freePort, startServer, launchBrowser, cleanUp, screenshots, sandbox } from "./harness.mjs";

const doc = readFileSync(path.join(root, "docs/integration.md"), "utf8");

/// The verifier as docs/integration.md prints it (its ```js block), made callable.
function documentedVerifier() {
  const code = doc.match(/```js\n([\s\S]*?)```/)[1];
  return new Function("require", `${code}\nreturn verifyGrant;`)((m) => (m === "node:crypto" ? crypto : null));
}

/// A `name: `value`` line of the doc's test vector.
function vector(name) {
  const line = doc.split("\n").find((l) => l.startsWith(`${name}: `));
  assert.ok(line, `docs/integration.md has no "${name}:" line`);
  return line.slice(name.length + 2).trim().replace(/^`|`$/g, "");
}

test("the documented verifier takes the documented test vector, and refuses it changed or expired", () => {
  const verifyGrant = documentedVerifier();
  const jwks = { keys: [{ kty: "OKP", crv: "Ed25519", x: vector("public key"), kid: vector("kid") }] };
  const grant = vector("grant");
  const claims = verifyGrant(grant, jwks, { audience: "shop", issuer: "flashgate" }, 1796000001);
  assert.deepEqual(claims, JSON.parse(vector("claims")));
  const [h, c, s] = grant.split(".");
  const changed = Buffer.from(JSON.stringify({ ...claims, price: 1 })).toString("base64url");
  assert.throws(() => verifyGrant(`${h}.${changed}.${s}`, jwks, { audience: "shop", issuer: "flashgate" }, 1796000001), /bad signature/);
  // a checkout clock 5 s off either way still takes it (the default leeway); past that it does not
  verifyGrant(grant, jwks, { audience: "shop", issuer: "flashgate" }, 1796000124);
  verifyGrant(grant, jwks, { audience: "shop", issuer: "flashgate" }, 1795999995);
  assert.throws(() => verifyGrant(grant, jwks, { audience: "shop", issuer: "flashgate" }, 1796000126), /expired/);
  assert.throws(() => verifyGrant(grant, jwks, { audience: "shop", issuer: "flashgate" }, 1795999994), /not yet valid/);
  assert.throws(() => verifyGrant(grant, jwks, { audience: "other", issuer: "flashgate" }, 1796000001), /not for us/);
});

// ---- a shop-token shopper, end to end ----

const { ns, db, env, fg, redis, sql } = sandbox("shop");
const shot = screenshots("shop-token", { axe: true });
const shopKey = crypto.generateKeyPairSync("ed25519");
const shopJwk = { ...shopKey.publicKey.export({ format: "jwk" }), kid: "shop-key-1", alg: "EdDSA", use: "sig" };
let server, browser, base, shopBase, shop, goods;

/// A JWT the pretend shop signs for `sub`.
function shopToken(sub) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: "EdDSA", typ: "JWT", kid: "shop-key-1" });
  const body = b64({ iss: "https://shop.test", aud: "flashgate", sub, iat: now, exp: now + 600 });
  const sig = crypto.sign(null, Buffer.from(`${head}.${body}`), shopKey.privateKey).toString("base64url");
  return `${head}.${body}.${sig}`;
}

before(async () => {
  const shopPort = await freePort();
  shopBase = `http://127.0.0.1:${shopPort}`;
  shop = createServer((req, res) => {
    if (req.url.startsWith("/.well-known/jwks.json")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: [shopJwk] }));
    } else if (req.url.startsWith("/checkout")) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end("<!doctype html><html lang=en><title>Shop checkout</title><main><h1>Shop checkout</h1></main></html>");
    } else {
      res.writeHead(404).end();
    }
  }).listen(shopPort, "127.0.0.1");
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const shopEnv = {
    ...env(port),
    FLASHGATE_AUTH: "jwt",
    FLASHGATE_JWT_JWKS_URL: `${shopBase}/.well-known/jwks.json`,
    FLASHGATE_JWT_ISSUER: "https://shop.test",
    FLASHGATE_JWT_AUDIENCE: "flashgate",
    FLASHGATE_JWT_COOKIE: "shop_jwt",
    FLASHGATE_GRANT_KEY: crypto.randomBytes(32).toString("base64url"),
    FLASHGATE_GRANT_REDEEM_TOKEN: crypto.randomBytes(32).toString("hex"),
    FLASHGATE_CURRENCY: "CNY",
    FLASHGATE_CHECKOUT_URL: `${shopBase}/checkout?grant={grant}`,
  };
  fg(port, "migrate");
  goods = fg(port, "seed", "--stock", "2", "--starts-in", "0", "--lasts", "3600").trim().split("\n").pop();
  server = await startServer(shopEnv, `${base}/healthz`);
  browser = await launchBrowser();
});

after(async () => {
  shop?.close();
  await cleanUp({ browser, server, db, ns });
});

test("a shopper with the shop's token buys and is sent to the shop's checkout with a grant that verifies", async () => {
  const ctx = await browser.newContext({ viewport: { width: 420, height: 800 } });
  await ctx.addCookies([{ name: "shop_jwt", value: shopToken("customer-7"), url: base }]);
  const page = await ctx.newPage();
  await page.goto(`${base}/goods.html?id=${goods}`);
  await page.waitForSelector("#buy:not([disabled])");
  // the captcha's request made the shopper's user (a row with the shop's subject)
  let userId = "";
  for (let i = 0; i < 50 && !userId; i++) {
    userId = sql("SELECT id FROM users WHERE subject = 'customer-7'");
    if (!userId) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(userId, "no user was made for the shop's subject");
  const key = `${ns}sk:{g:${goods}}:captcha:${userId}`;
  redis("del", key);
  await page.click("#captcha");
  let answer = "";
  for (let i = 0; i < 50 && !answer; i++) {
    answer = redis("get", key);
    if (!answer) await new Promise((r) => setTimeout(r, 50));
  }
  await page.fill("#answer", answer);
  await shot(page, "sale-page");
  await page.click("#buy");
  await page.waitForSelector("#checkout-link", { timeout: 15000 });
  await shot(page, "continue-to-checkout");
  await page.waitForURL(/\/checkout\?grant=/, { timeout: 10000 });
  const grant = new URL(page.url()).searchParams.get("grant");
  const jwks = await (await fetch(`${base}/.well-known/jwks.json`)).json();
  const claims = documentedVerifier()(grant, jwks, { audience: "shop", issuer: "flashgate" });
  const order = sql(`SELECT id FROM order_info WHERE user_id = ${userId}`);
  assert.equal(claims.sub, "customer-7");
  assert.equal(String(claims.order), order);
  assert.equal(String(claims.sale), goods);
  assert.equal(claims.jti, `order-${order}`);
  await ctx.close();
});
