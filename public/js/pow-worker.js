// The draw's proof of work (src/draws/proof.rs, the ALTCHA v1 form), solved off the page's
// thread: given {salt, challenge, maxnumber}, counts n up from 0 until SHA-256(salt ‖ n) is the
// challenge (at most maxnumber + 1 hashes, half on average), with crypto.subtle. Answers
// {progress} now and then (a fraction of maxnumber: the page announces it), then
// {number, tookMs} (number null if nothing up to maxnumber solves it).
"use strict";

function bytesOf(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function same(buf, want) {
  const got = new Uint8Array(buf);
  if (got.length !== want.length) return false;
  for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) return false;
  return true;
}

const PROGRESS_EVERY = 10000;

self.onmessage = async (e) => {
  const { salt, challenge, maxnumber } = e.data;
  const began = performance.now();
  const want = bytesOf(challenge);
  const enc = new TextEncoder();
  for (let n = 0; n <= maxnumber; n++) {
    const digest = await crypto.subtle.digest("SHA-256", enc.encode(salt + n));
    if (same(digest, want)) {
      self.postMessage({ number: n, tookMs: performance.now() - began });
      return;
    }
    if (n % PROGRESS_EVERY === 0 && n > 0) self.postMessage({ progress: n / maxnumber });
  }
  self.postMessage({ number: null, tookMs: performance.now() - began });
};
