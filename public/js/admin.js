// The operators' console: the sale list, the create/edit form, a live view of one sale
// refreshed every second, and the Lua script releases (versions, canary, promote, roll back). Everything comes from the admin API (docs/api.md, "Admin"); the
// validation messages are the API's own, shown beside the field it names. The admin token is
// kept in sessionStorage only (this tab, until it closes). The chart is uPlot (vendored in
// /vendor/uplot, MIT).
"use strict";

const TOKEN_KEY = "flashgate-admin-token";
const $ = (id) => document.getElementById(id);
const show = (id, on) => $(id).classList.toggle("hidden", !on);
// The chart's series: the admission outcomes worth a line, then orders written.
const SERIES = [
  ["queued", "admitted", "#2e7d32"],
  ["sold_out", "sold out", "#e4393c"],
  ["sold_out_local", "sold out (edge flag)", "#f4a3a4"],
  ["duplicate", "duplicate", "#8e24aa"],
  ["duplicate_local", "duplicate (edge marks)", "#ce93d8"],
  ["rate_limited", "rate limited", "#ef6c00"],
  ["ended", "ended", "#555"],
  ["written", "orders written", "#1565c0"],
];
const FIELDS = ["name", "title", "detail", "imageUrl", "price", "salePrice", "stock", "addStock",
  "startAt", "endAt", "shards", "pathFactor", "userRate", "userBurst", "gateRate", "gateBurst",
  "perBuy", "perAccount", "campaign", "campaignPerAccount", "mode", "registerFrom", "registerUntil",
  "claimFor"];
const NUMBERS = new Set(["price", "salePrice", "stock", "addStock", "shards", "pathFactor",
  "userRate", "userBurst", "gateRate", "gateBurst", "perBuy", "perAccount", "campaignPerAccount",
  "claimFor"]);
// the form's times (datetime-local, in the operator's time zone; epoch ms in the API)
const TIMES = new Set(["startAt", "endAt", "registerFrom", "registerUntil"]);
// a draw sale's own fields (docs/draws.md): shown for mode "draw" only
const DRAW_FIELDS = ["registerFrom", "registerUntil", "claimFor"];

let current = null; // the goods id in the live view
let editing = null; // the sale being edited (its last view), or null for a new one
let chart = null;
let timers = [];

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` };
  if (method !== "GET") headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let env = null;
  try { env = await r.json(); } catch { /* not JSON */ }
  return { status: r.status, env };
}

function stopTimers() {
  timers.forEach(clearInterval);
  timers = [];
}

function view(name) {
  stopTimers();
  for (const s of ["login", "sales", "editor", "live", "scripts"]) show(s, s === name);
  show("logout", name !== "login");
}

// ---- the token ----

async function enter() {
  const t = $("token").value.trim();
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  const { status } = await api("GET", "/api/admin/sales?limit=1");
  if (status === 200) return listSales();
  sessionStorage.removeItem(TOKEN_KEY);
  $("login-msg").textContent = status === 403 || status === 401 ? "That token is not the admin token." : `The admin API answered ${status}.`;
  show("login-msg", true);
}

// ---- the list ----

function phaseBadge(phase) {
  const b = document.createElement("span");
  b.className = `phase ${phase}`;
  b.textContent = phase.replace("_", " ");
  return b;
}

function progress(sold, stock) {
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.title = `${sold} of ${stock}`;
  const fill = document.createElement("span");
  fill.style.width = `${stock ? Math.min(100, (100 * sold) / stock) : 0}%`;
  bar.append(fill);
  return bar;
}

async function refreshList() {
  const { status, env } = await api("GET", "/api/admin/sales");
  if (status !== 200) return;
  const rows = env.data.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.goods = s.goodsId;
    const sold = s.stock - s.live.stockLeft;
    const cells = [s.goodsId, s.name, phaseBadge(s.phase), progress(sold, s.stock), s.live.stockLeft,
      s.live.orders.written, s.live.backlog];
    for (const c of cells) {
      const td = document.createElement("td");
      td.append(c instanceof Node ? c : String(c));
      tr.append(td);
    }
    tr.addEventListener("click", () => liveView(s.goodsId));
    return tr;
  });
  $("sale-rows").replaceChildren(...rows);
}

async function listSales() {
  view("sales");
  await refreshList();
  timers.push(setInterval(refreshList, 2000));
}

// ---- the form ----

const localInput = (ms) => {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 19);
};

function openEditor(sale) {
  view("editor");
  editing = sale;
  $("editor-title").textContent = sale ? `Edit sale ${sale.goodsId}` : "New sale";
  show("form-msg", false);
  for (const f of FIELDS) {
    const input = $(`f-${f}`);
    input.classList.remove("invalid");
    let v = sale ? sale[f] : undefined;
    if (!sale) v = { imageUrl: "/img/goods.svg", shards: 1, perBuy: 1, perAccount: 1, mode: "firstCome", claimFor: 1800 }[f];
    if (TIMES.has(f) && v !== undefined && v !== null) v = localInput(v);
    input.value = v === undefined || v === null ? "" : v;
  }
  $("f-addStock").closest("div").classList.toggle("hidden", !sale);
  // a campaign is set when the sale is made (the admin API refuses a change: 500726)
  for (const f of ["f-campaign", "f-campaignPerAccount"]) $(f).readOnly = Boolean(sale);
  // a sale's mode and registration window are fixed once made
  for (const f of ["mode", "registerFrom", "registerUntil"]) $(`f-${f}`).disabled = !!sale;
  if (!sale) {
    const start = Date.now() + 5 * 60000;
    $("f-startAt").value = localInput(start);
    $("f-endAt").value = localInput(start + 3600000);
    // a draw's registration, if chosen: from a minute from now until the start
    $("f-registerFrom").value = localInput(Date.now() + 60000);
    $("f-registerUntil").value = localInput(start);
  }
  drawFields();
}

// The draw's fields, shown for a draw sale only.
function drawFields() {
  const draw = $("f-mode").value === "draw";
  for (const f of DRAW_FIELDS) $(`f-${f}`).closest("div").classList.toggle("hidden", !draw);
}

function formBody() {
  const body = {};
  const draw = $("f-mode").value === "draw";
  for (const f of FIELDS) {
    const raw = $(`f-${f}`).value.trim();
    if (raw === "") continue;
    // a first-come sale names no draw field; a draw's mode and window are fixed once made
    if (DRAW_FIELDS.includes(f) && !draw) continue;
    if (editing && (f === "mode" || f === "registerFrom" || f === "registerUntil")) continue;
    let v = raw;
    if (TIMES.has(f)) v = new Date(raw).getTime();
    else if (NUMBERS.has(f)) v = Number(raw);
    body[f] = v;
  }
  if (!editing && !draw) delete body.mode; // first come is the default
  if (!editing) {
    for (const f of ["detail", "imageUrl"]) if (!(f in body)) body[f] = "";
    return body;
  }
  // a change sends only what differs from the sale as it is
  const patch = {};
  const same = (k, v) => TIMES.has(k)
    ? Math.abs(editing[k] - v) < 1000 // the form shows whole seconds
    : editing[k] === v;
  for (const [k, v] of Object.entries(body)) if (k === "addStock" || !same(k, v)) patch[k] = v;
  return patch;
}

async function save(e) {
  e.preventDefault();
  for (const f of FIELDS) $(`f-${f}`).classList.remove("invalid");
  const body = formBody();
  const { status, env } = editing
    ? await api("PATCH", `/api/admin/sales/${editing.goodsId}`, body)
    : await api("POST", "/api/admin/sales", body);
  if (status === 200 || status === 201) return liveView(env.data.goodsId);
  $("form-msg").textContent = env ? `${env.msg} (code ${env.code})` : `The admin API answered ${status}.`;
  show("form-msg", true);
  const field = env && env.data && env.data.field;
  if (field && $(`f-${field}`)) $(`f-${field}`).classList.add("invalid");
}

// ---- the live view ----

// Where this edge writes in Redis: a failover it followed, and whether buys wait for a replica.
function redisLine(r) {
  const where = r.redisPrimary ? `${r.redisMode}, primary ${r.redisPrimary}` : r.redisMode;
  const moved = r.redisFailovers > 0 ? ` — FAILOVER: the primary moved ${r.redisFailovers} time(s)` : "";
  const confirm = r.replicaConfirmation === "off" ? "" : `; replica confirmation ${r.replicaConfirmation}`;
  const late = r.confirmTimeouts > 0 ? `; ${r.confirmTimeouts} confirmation(s) timed out` : "";
  return `${where}${moved}${confirm}${late}`;
}

// Orders out: each sink, flagged when it is disabled (a 410), failing or has parked events.
function sinkLine(k) {
  const trouble = k.disabled ? `DISABLED: ${k.disabled}` : k.parked > 0 ? `${k.parked} PARKED` : k.failing > 0 ? `FAILING (${k.lastError || "retrying"})` : "ok";
  return `${trouble}; ${k.backlog} waiting, oldest ${k.oldestSeconds} s`;
}

function figures(s) {
  const l = s.live;
  const rows = [
    ["Stock", `${l.stockLeft} left of ${s.stock}`],
    ["Admitted", l.admittedUnits === l.admitted ? l.admitted : `${l.admitted} buys, ${l.admittedUnits} units`],
    ["Rules", `at most ${s.perBuy} a buy, ${s.perAccount} an account` +
      (s.campaign ? `, ${s.campaignPerAccount} an account across campaign ${s.campaign}` : "")],
    ["Orders written", `${l.orders.written} (unpaid ${l.orders.unpaid}, paid ${l.orders.paid}, closed ${l.orders.closed})`],
    ["Failed", l.failed],
    ["Backlog", `${l.backlog} (pending ${l.pending})`],
    ["Dead letters", l.deadLetters],
    ["MySQL stock", l.mysqlStock],
    ...(l.room ? [["Waiting room", `${l.room.size} tickets, ${l.room.through} let through`]] : []),
    ...(l.draw ? drawRows(s, l.draw) : []),
    ["Window", `${new Date(s.startAt).toLocaleString()} → ${new Date(s.endAt).toLocaleString()}`],
    ...(s.redis ? [["Redis", redisLine(s.redis)]] : []),
    ...(s.eventSinks || []).map((k) => [`Events → ${k.sink}`, sinkLine(k)]),
  ];
  $("live-figures").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(v);
    dd.dataset.figure = k;
    return [dt, dd];
  }));
  const most = Math.max(1, ...l.shards.map((x) => x.stock));
  $("shards").replaceChildren(...l.shards.map((x, i) => {
    const row = document.createElement("div");
    row.className = "shard";
    const name = document.createElement("span");
    name.textContent = `shard ${i}`;
    const bar = progress(x.stock, most);
    const n = document.createElement("span");
    n.textContent = x.stock;
    row.append(name, bar, n);
    return row;
  }));
}

// A draw sale's rows: its phase and entries (with how many came in the last 10 s: the live
// view samples them each second), the commitment and seed, and the claims and waitlist.
let drawSamples = [];
function drawRows(s, d) {
  const now = Date.now();
  if (drawSamples.length && drawSamples[0].goods !== s.goodsId) drawSamples = [];
  drawSamples.push({ goods: s.goodsId, at: now, entries: d.entries });
  drawSamples = drawSamples.filter((x) => now - x.at <= 10000);
  const lately = d.entries - drawSamples[0].entries;
  const secs = Math.max(1, Math.round((now - drawSamples[0].at) / 1000));
  const moved = Math.max(0, d.given - s.stock);
  return [
    ["Draw", `${d.phase}: registration ${new Date(s.registerFrom).toLocaleString()} → ${new Date(s.registerUntil).toLocaleString()}, ${s.claimFor} s to claim`],
    ["Entries", `${d.entries} (+${lately} in the last ${secs} s)`],
    ["Commitment", d.commitment],
    ["Seed", d.seed || "published at the draw"],
    ["Claims", `${d.given} given: ${d.claiming} holding, ${d.claimed} bought, ${d.lapsed} lapsed; the waitlist moved ${moved}`],
  ];
}

function drawChart(series) {
  const xs = Array.from({ length: series.seconds }, (_, i) => series.from + i);
  const data = [xs, ...SERIES.map(([k]) => series.series[k] || xs.map(() => 0))];
  if (!chart) {
    const width = Math.max(320, $("chart").clientWidth || 600);
    chart = new uPlot({
      width, height: 260,
      series: [{}, ...SERIES.map(([, label, stroke]) => ({ label, stroke, width: 2 }))],
      axes: [{}, { label: "per second" }],
      scales: { x: { time: true } },
    }, data, $("chart"));
  } else {
    chart.setData(data);
  }
}

async function refreshLive() {
  const [sale, series] = await Promise.all([
    api("GET", `/api/admin/sales/${current}`),
    api("GET", `/api/admin/sales/${current}/series?seconds=300`),
  ]);
  if (sale.status !== 200) {
    $("live-msg").textContent = sale.env ? sale.env.msg : `The admin API answered ${sale.status}.`;
    show("live-msg", true);
    return;
  }
  const s = sale.env.data;
  editing = s;
  $("live-title").textContent = `${s.goodsId} · ${s.name}`;
  $("live-phase").replaceWith(Object.assign(phaseBadge(s.phase), { id: "live-phase" }));
  $("cancel").disabled = s.phase === "ended" || s.phase === "cancelled";
  figures(s);
  if (series.status === 200) drawChart(series.env.data);
}

async function refreshAudit() {
  const { status, env } = await api("GET", `/api/admin/sales/${current}/audit`);
  const el = $("audit");
  if (status !== 200) {
    el.className = "msg error";
    el.textContent = `audit unavailable (${status})`;
    return;
  }
  const a = env.data;
  if (!a.atRest) {
    el.className = "msg info";
    el.textContent = `Not at rest: ${a.inFlight} in flight. The audit runs once the queue is drained.`;
  } else if (a.clean) {
    el.className = "msg ok";
    el.textContent = `Clean: initial ${a.initialStock} = Redis ${a.redisStock} + orders ${a.orders} − given back ${a.unitsReturned}.`;
  } else {
    el.className = "msg error";
    el.textContent = `Drift ${a.stockDrift > 0 ? "+" : ""}${a.stockDrift}: ` + a.findings.map((f) => f.message).join(" · ") +
      " Run `flashgate audit " + a.goodsId + " --fix` once you have read it.";
  }
}

async function liveView(goods) {
  view("live");
  show("live-msg", false);
  current = goods;
  if (chart) { chart.destroy(); chart = null; }
  $("chart").replaceChildren();
  await refreshLive();
  await refreshAudit();
  timers.push(setInterval(refreshLive, 1000));
  timers.push(setInterval(refreshAudit, 5000));
}

async function cancelSale() {
  if (!confirm(`Cancel sale ${current}? Admissions stop at once; admitted orders are kept.`)) return;
  const { status, env } = await api("POST", `/api/admin/sales/${current}/cancel`);
  if (status !== 200) {
    $("live-msg").textContent = env ? `${env.msg} (code ${env.code})` : `The admin API answered ${status}.`;
    show("live-msg", true);
  }
  await refreshLive();
}

// ---- the scripts ----

function cells(tr, values) {
  for (const v of values) {
    const td = document.createElement("td");
    td.append(v instanceof Node ? v : String(v));
    tr.append(td);
  }
  return tr;
}

async function refreshScripts() {
  const { status, env } = await api("GET", "/api/admin/lua");
  if (status !== 200) {
    $("lua-msg").textContent = env ? env.msg : `The admin API answered ${status}.`;
    show("lua-msg", true);
    return;
  }
  const st = env.data.state;
  $("lua-live").textContent = `Live: version ${st.live}` +
    (st.canary != null ? `; canary: version ${st.canary} deciding ${st.pct}% of admission calls` : "; no canary");
  $("lua-promote").disabled = st.canary == null;
  $("lua-versions").replaceChildren(...env.data.versions.slice().reverse().map((v) => {
    const tr = document.createElement("tr");
    tr.dataset.version = v.version;
    const badge = document.createElement("span");
    badge.className = `phase ${v.live ? "live" : v.canary ? "scheduled" : ""}`;
    badge.textContent = v.live ? "live" : v.canary ? `canary ${st.pct}%` : "—";
    const o = v.counts.outcomes;
    return cells(tr, [v.version, badge, v.hash.slice(0, 12), v.note,
      v.atMs ? new Date(v.atMs).toLocaleString() : "built in", v.counts.calls, o.queued || 0,
      (o.sold_out || 0), o.duplicate || 0, o.rate_limited || 0, v.meanMs.toFixed(2),
      v.p99Ms == null ? ">100" : v.p99Ms]);
  }));
  $("lua-edges").replaceChildren(...env.data.edges.map((e) => cells(document.createElement("tr"), [
    e.edge, `${e.live}${e.canary != null ? ` + canary ${e.canary} (${e.pct}%)` : ""}`,
    !e.up ? "gone" : e.current ? "current" : "behind", e.error || ""])));
}

async function scriptsView() {
  view("scripts");
  show("lua-msg", false);
  await refreshScripts();
  timers.push(setInterval(refreshScripts, 1000));
}

async function luaAction(path, question) {
  if (!confirm(question)) return;
  const { status, env } = await api("POST", path);
  if (status !== 200) {
    $("lua-msg").textContent = env ? `${env.msg} (code ${env.code})` : `The admin API answered ${status}.`;
    show("lua-msg", true);
  } else {
    show("lua-msg", false);
  }
  await refreshScripts();
}

$("to-scripts").addEventListener("click", scriptsView);
$("scripts-back").addEventListener("click", listSales);
$("lua-promote").addEventListener("click", () => luaAction("/api/admin/lua/promote",
  "Make the canary the live version on every edge?"));
$("lua-rollback").addEventListener("click", () => luaAction("/api/admin/lua/rollback",
  "Roll every edge back to the previous version (a canary out is withdrawn)?"));

$("enter").addEventListener("click", enter);
$("token").addEventListener("keydown", (e) => { if (e.key === "Enter") enter(); });
$("logout").addEventListener("click", (e) => {
  e.preventDefault();
  sessionStorage.removeItem(TOKEN_KEY);
  view("login");
});
$("new").addEventListener("click", () => openEditor(null));
$("sale-form").addEventListener("submit", save);
$("f-mode").addEventListener("change", drawFields);
$("close-editor").addEventListener("click", () => (editing && current ? liveView(current) : listSales()));
$("edit").addEventListener("click", () => openEditor(editing));
$("cancel").addEventListener("click", cancelSale);
$("back").addEventListener("click", listSales);

if (sessionStorage.getItem(TOKEN_KEY)) enter(); else view("login");
