// Where the login page sends a shopper after login (public/js/api.js `sameOrigin`): only to a
// path of this site, whatever `next` says. The page's own function is run (in a context with a
// `location`) against the spellings an outside review and the attack on its first fix used;
// Node's URL parser is the WHATWG one browsers use.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const origin = "https://shop.example";
const source = readFileSync(new URL("../../public/js/api.js", import.meta.url), "utf8");
const context = { location: { origin, pathname: "/login.html", search: "" }, URL, URLSearchParams };
vm.createContext(context);
vm.runInContext(`${source}\nthis.Flash = Flash;`, context);
const { sameOrigin } = context.Flash;

test("next is followed only to a path of this site", () => {
  const hostile = [
    "//evil.example",
    "/\\evil.example",
    "/%09/evil.example",
    "/.//evil.example",
    "/..//evil.example",
    "/%2e//evil.example",
    "/./\\evil.example",
    "/.\\/evil.example",
    "/a/../..//evil.example/x",
    "https://evil.example/",
    "javascript:alert(1)",
    "\t/evil.example",
  ];
  for (const next of hostile) {
    const kept = sameOrigin(next);
    const lands = new URL(kept, `${origin}/login.html`);
    assert.equal(lands.origin, origin, `${JSON.stringify(next)} -> ${kept}`);
  }
  for (const next of [null, "", "evil.example"]) assert.equal(sameOrigin(next), "/");
  assert.equal(sameOrigin("/goods.html?id=7#buy"), "/goods.html?id=7#buy");
  assert.equal(sameOrigin("/order.html?orderId=12"), "/order.html?orderId=12");
});
