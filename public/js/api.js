// flashgate pages: the API client, human messages for every error code, and the client half of
// the password hash. Plain JS, no build step. Every page loads public/js/i18n.js, then this.
"use strict";

const Flash = (() => {
  // The API's codes (docs/api.md), in words a shopper understands, in their language (the
  // catalogues' error.CODE keys, public/js/i18n.js): MESSAGES[code] is the message, or undefined
  // for a code the catalogues do not know (the server's own words are shown then).
  const MESSAGES = new Proxy({}, {
    get: (_, code) => (I18n.has(`error.${String(code)}`) ? I18n.t(`error.${String(code)}`) : undefined),
  });

  class ApiError extends Error {
    constructor(code, msg, status, data) {
      super(MESSAGES[code] || msg || I18n.t("error.request"));
      this.code = code;
      this.status = status;
      this.data = data;
    }
  }

  // The whole envelope: what `call` unwraps, for the answers that carry more than `data` (a
  // result with a grant and the shop's checkout beside it).
  async function envelope(method, path, body, headers) {
    const opts = { method, headers: { ...(headers || {}) }, credentials: "same-origin" };
    // every state-changing call is JSON, even without a body: the edge refuses anything else
    // (what a cross-site form could send), see docs/api.md
    if (body !== undefined || method !== "GET") {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body === undefined ? {} : body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      throw new ApiError(500100, "network error", 0);
    }
    let env = null;
    try { env = await res.json(); } catch (e) { /* not JSON */ }
    if (!env) throw new ApiError(500100, `HTTP ${res.status}`, res.status);
    if (env.code !== 0) throw new ApiError(env.code, env.msg, res.status, env.data);
    return env;
  }

  async function call(method, path, body, headers) {
    return (await envelope(method, path, body, headers)).data;
  }

  function param(name) {
    return new URLSearchParams(location.search).get(name);
  }

  // Where to go after login: `next` only if it is a path of this site. Resolved by the browser's
  // own URL parser and kept only when the origin is ours and the path cannot be read as a host,
  // so `/\\evil.example`, `/%09/evil.example`, `//evil.example` or `/.//evil.example` go home.
  function sameOrigin(next) {
    if (!next || !next.startsWith("/")) return "/";
    try {
      const url = new URL(next, location.origin);
      if (url.origin !== location.origin) return "/";
      // dot segments can leave a path that starts with two slashes (`/.//evil.example`), which
      // the browser would read as another host when it follows it
      if (url.pathname.startsWith("//") || url.pathname.includes("\\")) return "/";
      return url.pathname + url.search + url.hash;
    } catch (e) {
      return "/";
    }
  }

  function show(el, text, kind) {
    el.textContent = text;
    el.className = `msg ${kind || "info"}`;
  }

  function goLogin() {
    location.href = `/login.html?next=${encodeURIComponent(location.pathname + location.search)}`;
  }

  const money = (n) => I18n.money(n);

  // --- MD5 (RFC 1321), for the client half of the login's double hash (docs/api.md) ---------------------------
  function md5(str) {
    const bytes = new TextEncoder().encode(str);
    const n = ((bytes.length + 8) >>> 6) + 1;
    const words = new Uint32Array(n * 16);
    for (let i = 0; i < bytes.length; i++) words[i >> 2] |= bytes[i] << ((i % 4) * 8);
    words[bytes.length >> 2] |= 0x80 << ((bytes.length % 4) * 8);
    words[n * 16 - 2] = (bytes.length * 8) >>> 0;
    words[n * 16 - 1] = Math.floor(bytes.length / 0x20000000);
    const S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
    const K = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);
    let [a0, b0, c0, d0] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
    for (let blk = 0; blk < n * 16; blk += 16) {
      let [a, b, c, d] = [a0, b0, c0, d0];
      for (let i = 0; i < 64; i++) {
        let f, g;
        if (i < 16) { f = (b & c) | (~b & d); g = i; }
        else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) % 16; }
        else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) % 16; }
        else { f = c ^ (b | ~d); g = (7 * i) % 16; }
        const s = S[(i >> 4) * 4 + (i % 4)];
        const x = (a + f + K[i] + words[blk + g]) >>> 0;
        a = d; d = c; c = b;
        b = (b + ((x << s) | (x >>> (32 - s)))) >>> 0;
      }
      a0 = (a0 + a) >>> 0; b0 = (b0 + b) >>> 0; c0 = (c0 + c) >>> 0; d0 = (d0 + d) >>> 0;
    }
    return [a0, b0, c0, d0]
      .map((w) => Array.from({ length: 4 }, (_, i) => ((w >>> (i * 8)) & 0xff).toString(16).padStart(2, "0")).join(""))
      .join("");
  }

  const CLIENT_SALT = "1a2b3c4d";
  function passwordHash(plain) {
    const s = CLIENT_SALT;
    return md5(s[0] + s[2] + plain + s[5] + s[4]);
  }

  // Whether this browser logged in. The session token is an HttpOnly cookie the page cannot read,
  // so the login page leaves this mark and logging out (or a 500210 "log in first") clears it;
  // it only chooses "Log in" or "Log out" in the header, the server decides everything else.
  const MARK = "flashgate.loggedIn";
  function loggedIn(yes) {
    try {
      if (yes === true) localStorage.setItem(MARK, "1");
      else if (yes === false) localStorage.removeItem(MARK);
      return localStorage.getItem(MARK) === "1";
    } catch (e) {
      return false;
    }
  }

  return { call, envelope, param, sameOrigin, show, goLogin, money, md5, passwordHash, loggedIn, ApiError, MESSAGES };
})();
