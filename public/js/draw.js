// A draw sale on the sale page (docs/draws.md): loaded by goods.html before goods.js, which asks
// `Draw.start` whether the sale is a draw and, if it is, leaves the draw's card to this file.
//
// The card shows the phase (registration not open, registering, drawing, drawn, ended), the
// number of entries, the commitment and, after the draw, the seed and a link to the published
// list. While registration is open the page fetches a proof-of-work challenge and solves it
// quietly in a Web Worker (public/js/pow-worker.js, crypto.subtle), so "Enter the draw" usually
// posts at once; the work is announced to screen readers (the card's status line, aria-live).
// After the draw: the shopper's place, won or not, and for a winner the time left to buy, with
// the ordinary buy (goods.js: captcha, path, buy, result) shown by `hooks.claim`. A shopper
// moved up from the waitlist is told on the event stream (a `draw` event: goods.js passes it to
// `Draw.refresh`) and sees the same.
"use strict";

const Draw = (() => {
  const $ = (id) => document.getElementById(id);
  // how often the card is read again, by phase (the stream tells a winner at once)
  const EVERY_MS = { scheduled: 10000, registering: 10000, drawing: 1000, claiming: 15000 };

  let goodsId = 0;
  let hooks = null;
  let view = null;
  let timer = null;
  let ticking = null;
  // the proof being solved (or solved) for the next entry: a promise of {proof, tookMs}
  let ready = null;
  let entering = false;

  // Solves one challenge in a fresh worker: {proof (base64 JSON), tookMs}. `url`: where the
  // challenge comes from (this draw's by default; the waiting room's join uses it too).
  async function solve(onProgress, url) {
    const c = await Flash.call("GET", url || `/api/draws/${goodsId}/challenge`);
    const worker = new Worker("/js/pow-worker.js");
    try {
      const found = await new Promise((resolve, reject) => {
        worker.onmessage = (e) => {
          if (e.data.progress !== undefined) {
            if (onProgress) onProgress(e.data.progress);
            return;
          }
          resolve(e.data);
        };
        worker.onerror = (e) => reject(new Error(e.message || "worker failed"));
        worker.postMessage({ salt: c.salt, challenge: c.challenge, maxnumber: c.maxnumber });
      });
      if (found.number === null) throw new Error("unsolved");
      const solution = {
        algorithm: c.algorithm,
        challenge: c.challenge,
        number: found.number,
        salt: c.salt,
        signature: c.signature,
      };
      return { proof: btoa(JSON.stringify(solution)), tookMs: found.tookMs };
    } finally {
      worker.terminate();
    }
  }

  // Starts solving for the next entry (once), announcing it.
  function prepare() {
    if (ready) return ready;
    const work = $("draw-work");
    const bar = $("draw-progress");
    work.textContent = I18n.t("draw.working");
    bar.value = 0;
    bar.classList.remove("hidden");
    let halfway = false;
    ready = solve((p) => {
      bar.value = Math.round(100 * p);
      if (!halfway && p >= 0.5) {
        halfway = true;
        work.textContent = I18n.t("draw.stillWorking");
      }
    }).then(
      (r) => {
        bar.value = 100;
        work.textContent = I18n.t("draw.workDone");
        return r;
      },
      (e) => {
        ready = null;
        bar.classList.add("hidden");
        work.textContent = "";
        throw e;
      },
    );
    // an unhandled rejection is not the page's business until the shopper presses Enter
    ready.catch(() => {});
    return ready;
  }

  async function enter() {
    if (entering) return;
    entering = true;
    $("draw-enter").disabled = true;
    const you = $("draw-you");
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          const { proof } = await prepare();
          ready = null; // a proof is spent by its entry
          const r = await Flash.call("POST", `/api/draws/${goodsId}/entries`, { proof });
          Flash.show(you, I18n.t(r.again ? "draw.enteredBefore" : "draw.entered", { n: r.entry }), "ok");
          $("draw-progress").classList.add("hidden");
          $("draw-work").textContent = "";
          break;
        } catch (e) {
          // a proof gone stale (expired, spent, or easier than this address now owes): once more
          if (attempt === 0 && [500545, 500547, 500551].includes(e.code)) continue;
          throw e;
        }
      }
      await refresh();
    } catch (e) {
      if (e.code === 500210) {
        Flash.loggedIn(false);
        Flash.show(you, `${Flash.MESSAGES[500210]} `, "error");
        const a = document.createElement("a");
        a.href = `/login.html?next=${encodeURIComponent(location.pathname + location.search)}`;
        a.id = "login-to-enter";
        a.textContent = I18n.t("nav.login");
        you.appendChild(a);
      } else {
        Flash.show(you, e.message, "error");
      }
      $("draw-enter").disabled = false;
    } finally {
      entering = false;
    }
  }

  function clock(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
  }

  // The time left to buy, each second (role="timer": read when asked, not announced each tick).
  function countdown(until) {
    clearInterval(ticking);
    const el = $("draw-countdown");
    const tick = () => {
      const left = until - Date.now();
      el.textContent = I18n.t("draw.claimLeft", { time: clock(left) });
      if (left <= 0) {
        // the claim has passed: read the draw again (once a second until the waitlist moved)
        clearInterval(ticking);
        later(1000);
      }
    };
    el.classList.remove("hidden");
    tick();
    ticking = setInterval(tick, 1000);
  }

  function later(ms) {
    clearTimeout(timer);
    timer = setTimeout(refresh, Math.max(200, ms));
  }

  function render(v) {
    view = v;
    const now = Date.now();
    const phase = $("draw-phase");
    const you = v.you;
    phase.dataset.phase = v.phase;
    $("draw-entries").textContent = I18n.t("draw.entriesCount", { n: v.entries });
    $("draw-units").textContent = String(v.units);
    $("draw-when").textContent = I18n.date(v.registerUntil);
    $("draw-commitment").textContent = v.commitment;
    $("draw-seed-row").classList.toggle("hidden", !v.seed);
    if (v.seed) {
      $("draw-seed").textContent = v.seed;
      $("draw-published").href = `/api/draws/${goodsId}/published`;
    }
    const enterable = v.phase === "registering" && !you;
    $("draw-enter").classList.toggle("hidden", !enterable);
    if (!enterable) {
      $("draw-progress").classList.add("hidden");
      $("draw-work").textContent = "";
    }
    $("draw-countdown").classList.toggle("hidden", !(you && you.state === "claiming"));
    if (!(you && you.state === "claiming")) clearInterval(ticking);
    const youEl = $("draw-you");
    youEl.dataset.state = you ? you.state : "none";
    switch (v.phase) {
      case "scheduled":
        phase.textContent = I18n.t("draw.opensAt", { time: I18n.date(v.registerFrom) });
        later(Math.min(EVERY_MS.scheduled, v.registerFrom - now));
        break;
      case "registering":
        phase.textContent = I18n.t("draw.registering", { time: I18n.date(v.registerUntil) });
        if (you) {
          Flash.show(youEl, I18n.t("draw.entered", { n: you.entry }), "ok");
          hooks.stream(); // the draw's claims are pushed on it
        } else if (Flash.loggedIn()) prepare();
        later(Math.min(EVERY_MS.registering, v.registerUntil - now + 200));
        break;
      case "drawing":
        phase.textContent = I18n.t("draw.drawing");
        if (you) Flash.show(youEl, I18n.t("draw.entered", { n: you.entry }), "ok");
        if (you) hooks.stream(); // the claims are pushed on it
        later(EVERY_MS.drawing);
        break;
      case "claiming":
        phase.textContent = I18n.t("draw.drawn");
        hooks.stream();
        // just drawn: a winner's claim comes with the waitlist's first step, a moment later
        later(you && you.state === "waitlist" && you.place <= v.units ? 500 : EVERY_MS.claiming);
        renderYours(youEl, you, false);
        break;
      default: // over
        phase.textContent = I18n.t("draw.over");
        renderYours(youEl, you, true);
    }
    hooks.claim(!!you && you.state === "claiming" && v.phase === "claiming");
  }

  function renderYours(el, you, over) {
    if (!you) {
      Flash.show(el, I18n.t("draw.notEntered"), "info");
      return;
    }
    const place = { place: you.place || 0 };
    switch (you.state) {
      case "claiming":
        Flash.show(el, I18n.t("draw.won", { place: you.place, time: I18n.date(you.claimUntil) }), "ok");
        countdown(you.claimUntil);
        return;
      case "claimed":
        Flash.show(el, I18n.t("draw.claimed", place), "ok");
        return;
      case "lapsed":
        Flash.show(el, I18n.t("draw.lapsed", place), "error");
        return;
      default: // waitlist
        Flash.show(el, I18n.t(over ? "draw.lost" : "draw.waitlist", place), "info");
    }
  }

  async function refresh() {
    try {
      render(await Flash.call("GET", `/api/draws/${goodsId}`));
    } catch (e) {
      $("draw-phase").textContent = e.message;
      later(5000);
    }
  }

  // Whether `id` is a draw sale; if it is, shows its card and keeps it up to date. `h.claim(on)`
  // shows or hides the buy for a shopper holding a claim; `h.stream()` opens the event stream.
  async function start(id, h) {
    if (goodsId === id && view) {
      await refresh();
      return true;
    }
    let v;
    try {
      v = await Flash.call("GET", `/api/draws/${id}`);
    } catch (e) {
      if (e.code === 500540) return false; // a first-come sale
      throw e;
    }
    goodsId = id;
    hooks = h;
    $("draw").classList.remove("hidden");
    $("draw-enter").addEventListener("click", enter);
    render(v);
    return true;
  }

  return { start, refresh, solve, get view() { return view; } };
})();
