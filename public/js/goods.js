// The sale page: countdown, the waiting room if the sale has one, captcha, buy, then poll for
// the result.
//
// A sale with a waiting room (roomOpensAt): the page joins the room (POST /api/seckill/room)
// and polls GET /api/seckill/room when the answer says (nextPollMs), showing the position, the
// estimated wait and a progress bar; the captcha and the buy button appear when the ticket is
// let through. Before the start nobody has a position: the order is drawn at the start.
//
// The countdown starts from the server's remainSeconds (not the phone's clock); the buy button is
// enabled only while the sale runs. A buy is: GET /api/seckill/path (checks the captcha) then
// POST /api/seckill/{path}/orders; "queued" polls GET /api/seckill/result every 200 ms for up to
// 30 s and ends on the order link, or on the reason it failed.
//
// A sale's rules (perBuy, perAccount): the page states the limit per customer, shows a quantity
// picker when one buy may take more than one unit, and, when an account may buy more than once,
// sends each press with an Idempotency-Key of its own (without one, a second buy is a
// duplicate). Past the limit it says how many the shopper may still buy.
//
// Push: where the browser can, the page holds one event stream (GET /api/seckill/events,
// EventSource) instead of polling: the room's positions and the buy's result come on it. It
// falls back to polling when the stream is refused (503 past the edge's cap, an old browser, a
// proxy that will not pass it) and keeps a slow poll of the result as a safety net. "Being confirmed" (202 with code
// 500509: Redis replicas have not confirmed the buy yet) polls the same way: the result settles
// it either way.
//
// A draw sale (public/js/draw.js): the draw's card takes the place of the countdown; the buy
// box shows only for a shopper holding a claim (a winner, or one moved up from the waitlist: the
// stream's `draw` event), and buys as above.
"use strict";

const POLL_EVERY_MS = 200;
const GIVE_UP_AFTER_MS = 30000;
// In front of a shop: how long "continue to checkout" shows before the page goes there.
const CHECKOUT_AFTER_MS = 1500;

const goodsId = Number(Flash.param("id"));
const $ = (id) => document.getElementById(id);
const msg = $("msg");
let running = false;
let busy = false;
// the sale's rules (the catalogue's perBuy, perAccount and, in a campaign, campaignPerAccount)
let rules = { perBuy: 1, perAccount: 1, campaign: 0 };

function refreshCaptcha() {
  $("captcha").src = `/api/seckill/captcha?goodsId=${goodsId}&t=${Date.now()}`;
  $("answer").value = "";
}

function setButton() {
  $("buy").disabled = !running || busy;
}

async function load() {
  if (!Number.isInteger(goodsId) || goodsId <= 0) {
    Flash.show(msg, Flash.MESSAGES[500404], "error");
    return;
  }
  try {
    const g = await Flash.call("GET", `/api/goods/${goodsId}`);
    document.title = I18n.t("sale.title", { name: g.name });
    $("img").src = g.img;
    $("title").textContent = g.title;
    $("price").textContent = Flash.money(g.seckillPrice);
    $("was").textContent = Flash.money(g.price);
    $("stock").textContent = g.stock;
    rules = { perBuy: g.perBuy || 1, perAccount: g.perAccount || 1, campaign: g.campaignPerAccount || 0 };
    stateLimit(null);
    if ((rules.perAccount > 1 || rules.campaign) && Flash.loggedIn()) showAllowance();
    if (rules.perBuy > 1) {
      $("quantity").max = String(rules.perBuy);
      $("quantity-box").classList.remove("hidden");
    }
    if (await Draw.start(goodsId, drawHooks)) {
      $("state").textContent = "";
      return;
    }
    if (g.roomOpensAt && g.status !== 2 && !through) {
      $("buy-box").classList.add("hidden");
      show("room", true);
      await roomStep("POST");
      return;
    }
    countdown(g);
  } catch (e) {
    Flash.show(msg, e.message, "error");
  }
}

// The limits in words ("Limit 2 per customer", the campaign's across its sales) and, once known,
// what is left of this shopper's allowance (the result's allowanceLeft).
function stateLimit(left) {
  const words = [];
  if (rules.perAccount > 1) words.push(I18n.t("sale.limit", { n: rules.perAccount }));
  if (rules.campaign) words.push(I18n.t("sale.campaignLimit", { n: rules.campaign }));
  if (Number.isInteger(left)) words.push(I18n.t("sale.limitLeft", { n: left }));
  if (!words.length) return;
  $("limit").textContent = words.join(" ");
  $("limit").classList.remove("hidden");
}

// A sale that counts each account's units: the result says what is left of the allowance (a
// shopper not logged in yet just sees the limit).
async function showAllowance() {
  try {
    const env = await Flash.envelope("GET", `/api/seckill/result?goodsId=${goodsId}`);
    if (Number.isInteger(env.allowanceLeft)) stateLimit(env.allowanceLeft);
  } catch (_) { /* not logged in: the limit alone */ }
}
// ---- a draw sale ----

let claimShown = false;
const drawHooks = {
  // a claim held: the buy; none (yet, or any more): no buy, and no box unless a buy was shown
  claim(on) {
    if (on && !claimShown) refreshCaptcha();
    claimShown = claimShown || on;
    show("buy-box", claimShown);
    running = on;
    setButton();
  },
  stream() { openStream(); },
};

// ---- the waiting room ----

let through = false;
const show = (id, on) => $(id).classList.toggle("hidden", !on);
const secs = (ms) => Math.max(1, Math.ceil(ms / 1000));

// the codes of a join that asks for a proof of work (FLASHGATE_ROOM_POW): none, or a stale one
const ROOM_PROOF_CODES = [500543, 500545, 500547, 500551];

async function roomStep(method, proof) {
  let r;
  try {
    r = method === "POST"
      ? await Flash.call("POST", "/api/seckill/room", proof ? { goodsId, proof } : { goodsId })
      : await Flash.call("GET", `/api/seckill/room?goodsId=${goodsId}`);
  } catch (e) {
    if (e.code === 500210) { $("room-state").textContent = Flash.MESSAGES[500210]; loginLink($("room-detail")); return; }
    if (method === "POST" && !proof && ROOM_PROOF_CODES.includes(e.code)) {
      // the room asks for a moment of work (public/js/pow-worker.js), then the join again
      $("room-state").textContent = I18n.t("room.working");
      try {
        const solved = await Draw.solve(null, `/api/seckill/room/challenge?goodsId=${goodsId}`);
        await roomStep("POST", solved.proof);
        return;
      } catch (e2) {
        e = e2;
      }
    }
    $("room-state").textContent = e.message;
    setTimeout(() => roomStep("GET"), 2000);
    return;
  }
  // while the line moves, the stream tells the page; polling only without one
  if ((r.state === "in_room" || r.state === "waiting") && openStream()) {
    pushing = true;
  }
  renderRoom(r);
}

// Polls again in `ms`, unless the stream is telling the page instead.
function again(step, ms) {
  if (!pushing) setTimeout(() => roomStep(step), ms);
}

function renderRoom(r) {
  const state = $("room-state"), detail = $("room-detail"), fill = $("room-fill");
  state.dataset.state = r.state;
  switch (r.state) {
    case "not_open":
      state.textContent = I18n.t("room.opensIn", { s: secs(r.opensInMs) });
      detail.textContent = I18n.t("room.keepOpen");
      setTimeout(() => roomStep("POST"), r.nextPollMs);
      return;
    case "in_room":
      state.textContent = I18n.t("room.inRoom", { s: secs(r.startsInMs) });
      detail.textContent = I18n.t("room.here", { n: r.roomSize });
      fill.style.width = "0%";
      again("GET", r.nextPollMs);
      return;
    case "waiting":
      state.textContent = I18n.t("room.position", { position: r.position });
      detail.textContent = I18n.t("room.wait", { s: secs(r.waitMs), through: r.through, size: r.roomSize });
      state.dataset.position = r.position;
      fill.style.width = `${Math.round((100 * r.through) / (r.through + r.position))}%`;
      again("GET", r.nextPollMs);
      return;
    case "through":
      if (through) return; // told twice (the stream and a poll): once is enough
      fill.style.width = "100%";
      state.textContent = I18n.t("room.yourTurn");
      detail.textContent = "";
      through = true;
      $("buy-box").classList.remove("hidden");
      refreshCaptcha();
      load();
      return;
    case "no_room":
      through = true;
      show("room", false);
      $("buy-box").classList.remove("hidden");
      load();
      return;
    case "no_ticket":
      roomStep("POST");
      return;
    default: // sold_out, full, ended
      state.textContent = {
        sold_out: Flash.MESSAGES[500500],
        full: Flash.MESSAGES[500508],
        ended: I18n.t("sale.ended"),
      }[r.state] || r.state;
      detail.textContent = "";
      $("state").textContent = r.state === "sold_out" ? I18n.t("sale.soldOut") : "";
  }
}

// ---- push ----

let stream = null; // the open EventSource, while it works
let pushing = false; // the room's positions come on the stream
let pushedResult = 0; // the result the stream told, once it did
let checkout = null; // the shop's checkout with the grant, when the edge sends one
const resultWaiters = [];

// Opens the event stream (once); false where there is none to open.
function openStream() {
  if (stream) return true;
  if (!window.EventSource) return false;
  stream = new EventSource(`/api/seckill/events?goodsId=${goodsId}`);
  stream.addEventListener("room", (e) => {
    const r = JSON.parse(e.data);
    if (r.state !== "no_ticket") renderRoom(r);
  });
  // a draw's claim given (a winner, or moved up from the waitlist): the card is read again, and
  // the stream opened afresh, so a grant signed on it carries the claim (data.draw)
  stream.addEventListener("draw", () => {
    stream.close();
    stream = null;
    openStream();
    Draw.refresh();
  });
  stream.addEventListener("result", (e) => {
    const r = JSON.parse(e.data);
    pushedResult = r.result;
    if (r.checkout) checkout = r.checkout;
    resultWaiters.splice(0).forEach((w) => w(pushedResult));
  });
  stream.onerror = () => {
    // a stream that breaks is opened again by the browser; one refused (an error status, no
    // stream support on the way) is closed: back to polling
    if (stream && stream.readyState === EventSource.CLOSED) {
      stream = null;
      if (pushing) {
        pushing = false;
        roomStep("GET");
      }
    }
  };
  return true;
}

function loginLink(el) {
  el.textContent = "";
  const a = document.createElement("a");
  a.href = `/login.html?next=${encodeURIComponent(location.pathname + location.search)}`;
  a.id = "login-to-buy";
  a.textContent = I18n.t("nav.login");
  el.appendChild(a);
}

function countdown(g) {
  const state = $("state");
  if (g.status === 0) {
    let left = g.remainSeconds;
    running = false;
    const tick = () => {
      if (left <= 0) { load(); return; }
      state.textContent = I18n.t("sale.startsIn", { s: left });
      left -= 1;
      setTimeout(tick, 1000);
    };
    tick();
  } else if (g.status === 1) {
    running = g.stock > 0;
    state.textContent = I18n.t(g.stock > 0 ? "sale.onSale" : "sale.soldOut");
    if (g.endSeconds > 0) setTimeout(load, g.endSeconds * 1000 + 500);
  } else {
    running = false;
    state.textContent = I18n.t("sale.ended");
  }
  setButton();
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function pollResult() {
  const started = Date.now();
  while (Date.now() - started < GIVE_UP_AFTER_MS) {
    if (pushedResult !== 0) return pushedResult > 0 ? pushedResult : -1;
    if (stream) {
      // the stream brings it; a slow poll in case a message went astray
      await Promise.race([new Promise((w) => resultWaiters.push(w)), sleep(3000)]);
      if (pushedResult !== 0) continue;
    }
    const env = await Flash.envelope("GET", `/api/seckill/result?goodsId=${goodsId}`);
    const r = env.data;
    if (env.checkout) checkout = env.checkout;
    if (Number.isInteger(env.allowanceLeft)) stateLimit(env.allowanceLeft);
    if (r > 0) return r;
    if (r < 0) return -1;
    if (!stream) await sleep(POLL_EVERY_MS);
  }
  return 0;
}

// Polls the result and says how the buy ended.
async function settle() {
  const result = await pollResult();
  if (result > 0) success(result);
  else if (result < 0) Flash.show(msg, I18n.t("sale.failed"), "error");
  else Flash.show(msg, I18n.t("sale.stillProcessing"), "info");
}

// The order is written: its page, or, in front of a shop (the edge sent a checkout with the
// grant in it), the shop's checkout, where the shopper is sent after a moment to read this.
function success(orderId) {
  msg.innerHTML = "";
  msg.className = "msg ok";
  msg.append(I18n.t("sale.success"));
  const a = document.createElement("a");
  if (checkout && /^https?:\/\//.test(checkout)) {
    a.href = checkout;
    a.id = "checkout-link";
    a.textContent = I18n.t("sale.continueToCheckout");
    msg.appendChild(a);
    setTimeout(() => { location.href = checkout; }, CHECKOUT_AFTER_MS);
    return;
  }
  a.href = `/order.html?id=${orderId}`;
  a.id = "order-link";
  a.textContent = I18n.t("sale.viewAndPay");
  msg.appendChild(a);
}

// A key for one press of the buy button: the same buy if it is sent again, another for the next.
function buyKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

async function buy() {
  busy = true;
  setButton();
  try {
    const answer = $("answer").value.trim();
    const path = await Flash.call("GET", `/api/seckill/path?goodsId=${goodsId}&verifyCode=${encodeURIComponent(answer || "0")}`);
    openStream(); // the result will come on it
    const quantity = Math.min(rules.perBuy, Math.max(1, Math.floor(Number($("quantity").value) || 1)));
    const body = rules.perBuy > 1 ? { goodsId, quantity } : { goodsId };
    const headers = rules.perAccount > 1 ? { "Idempotency-Key": buyKey() } : undefined;
    await Flash.call("POST", `/api/seckill/${path}/orders`, body, headers);
    Flash.show(msg, I18n.t("sale.queued"), "info");
    await settle();
  } catch (e) {
    if (e.code === 500210) { Flash.goLogin(); return; }
    if (e.code === 500509) {
      Flash.show(msg, e.message, "info");
      await settle();
      return;
    }
    if (e.code === 500501) {
      // already bought: show the order if there is one
      const r = await Flash.call("GET", `/api/seckill/result?goodsId=${goodsId}`).catch(() => 0);
      Flash.show(msg, e.message + " ", "error");
      if (r > 0) {
        const a = document.createElement("a");
        a.href = `/order.html?id=${r}`;
        a.id = "order-link";
        a.textContent = I18n.t("sale.viewOrder");
        msg.appendChild(a);
      }
    } else if (e.code === 500520 && e.data) {
      const why = e.data.limit === "campaign" ? `${I18n.t("sale.campaignLimit", { n: rules.campaign })} ` : "";
      Flash.show(msg, `${e.message} ${why}${I18n.t("sale.limitLeft", { n: e.data.allowanceLeft })}`, "error");
      stateLimit(e.data.allowanceLeft);
    } else {
      Flash.show(msg, e.message, "error");
    }
    if (e.code === 500500) { running = false; $("state").textContent = I18n.t("sale.soldOut"); }
    refreshCaptcha();
  } finally {
    busy = false;
    setButton();
  }
}

$("captcha").addEventListener("click", refreshCaptcha);
$("new-captcha").addEventListener("click", () => { refreshCaptcha(); $("answer").focus(); });
// The captcha needs a session: logged out, its request fails. Show no broken image then, but
// why, and the way to log in.
$("captcha").addEventListener("error", async () => {
  await I18n.ready;
  $("captcha").parentElement.classList.add("hidden");
  $("captcha-label").classList.add("hidden");
  $("new-captcha").classList.add("hidden");
  Flash.loggedIn(false);
  Flash.show(msg, Flash.MESSAGES[500210] + " ", "error");
  const a = document.createElement("a");
  a.href = `/login.html?next=${encodeURIComponent(location.pathname + location.search)}`;
  a.id = "login-to-buy";
  a.textContent = I18n.t("nav.login");
  msg.appendChild(a);
});
$("captcha").addEventListener("load", () => {
  $("captcha").parentElement.classList.remove("hidden");
  $("captcha-label").classList.remove("hidden");
  $("new-captcha").classList.remove("hidden");
});
$("buy").addEventListener("click", buy);
refreshCaptcha();
I18n.ready.then(load);
