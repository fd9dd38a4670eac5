#!/usr/bin/env bash
# What background work costs as history grows, in one run (docs/operations.md, "The audit"):
#   1. an idle `flashgate all` (edge + worker in one process) with no sales: its CPU, Redis
#      commands/s and RSS over HIST_IDLE seconds;
#   2. the same after HIST_SALES ended sales exist (made in MySQL, as a year of daily sales
#      would be), once the worker has loaded, audited and settled them; and the size of the
#      shoppers' catalogue (GET /api/goods) then;
#   2b. HIST_SALES more ended sales (twice the history), settled: idle again, RSS again;
#   3. a sale of HIST_BUYERS buyers, really bought through the edge (wrk) and drained, at rest:
#      Redis logs every command slower than 1 ms (SLOWLOG) for HIST_WINDOW seconds of the worker
#      alone, then during two on-demand full audits (`flashgate audit ID`); prints the slowest
#      command of each (and, for scale, what one SMEMBERS of that buyer set, as the audit sent
#      before, costs Redis);
#   4. the buy path's p99 on another sale with that on-demand audit running in a loop beside it
#      vs without, HIST_ROUNDS interleaved rounds, medians.
# Goals: 1 and 2 the same within noise; 3 no background command over 2 ms; 4 no difference beyond
# noise. Run it on a quiet machine: Redis is shared, and its commands/s count every client.
#
# Usage: loadtest/history-bench.sh   (HIST_SALES=10000 HIST_BUYERS=400000 HIST_IDLE=20 HIST_WINDOW=30 HIST_ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."

SALES=${HIST_SALES:-10000}
BUYERS=${HIST_BUYERS:-400000}
IDLE=${HIST_IDLE:-20}
WINDOW=${HIST_WINDOW:-30}
ROUNDS=${HIST_ROUNDS:-3}
DUR=${HIST_DURATION:-10}
PORT=${HIST_PORT:-18280}

source loadtest/lib.sh
./scripts/services >/dev/null
need_wrk
cargo build --release -q
bin=$PWD/target/release/flashgate

work=$(mktemp -d)
ns="hist$$:"
db="flashgate_hist_$$"
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db"
export FLASHGATE_NAMESPACE="$ns" FLASHGATE_CAPTCHA=off FLASHGATE_LISTEN="127.0.0.1:$PORT"
export FLASHGATE_GATE_RATE=1000000000 FLASHGATE_GATE_BURST=1000000000 FLASHGATE_LOG=warn
export FLASHGATE_ADMIN_LISTEN=off FLASHGATE_PATH_FACTOR=1
slowlog_was=$(redis-cli CONFIG GET slowlog-log-slower-than | tail -n 1)
slowlen_was=$(redis-cli CONFIG GET slowlog-max-len | tail -n 1)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  redis-cli CONFIG SET slowlog-log-slower-than "$slowlog_was" >/dev/null
  redis-cli CONFIG SET slowlog-max-len "$slowlen_was" >/dev/null
  redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`"
  rm -rf "$work"
}
trap cleanup EXIT
sql() { mariadb -uroot -h127.0.0.1 -N -B "$db" -e "$1"; }
redis_cmds() { redis-cli INFO stats | awk -F: '/^total_commands_processed/ {print $2+0}'; }
# idle figures of process $1 over IDLE seconds: "cpu% redis-commands/s rss-MiB"
idle() {
  local c0 c1 r0 r1
  c0=$(cpu "$1"); r0=$(redis_cmds)
  sleep "$IDLE"
  c1=$(cpu "$1"); r1=$(redis_cmds)
  echo "$(awk -v a="$c0" -v b="$c1" -v t="$tck" -v d="$IDLE" 'BEGIN { printf "%.1f", (b - a) / t / d * 100 }') \
$(awk -v a="$r0" -v b="$r1" -v d="$IDLE" 'BEGIN { printf "%.0f", (b - a) / d }') $(($(ps -o rss= -p "$1") / 1024))"
}

"$bin" migrate 2>/dev/null
"$bin" all 2>"$work/all.log" & pids+=($!)
all=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 3
echo "== 1. idle, no sales (${IDLE}s)"
read -r cpu0 cmd0 rss0 <<<"$(idle "$all")"

# a batch of SALES ended sales, made in MySQL; waits until the worker has settled them all and
# prints the seconds it took
history() { # batch number
  python3 - "$SALES" "$1" >"$work/history.sql" <<'PY'
import sys
n, batch = int(sys.argv[1]), sys.argv[2]
for start in range(0, n, 1000):
    rows = ",".join(f"('history {batch}-{i}', 'a sale of long ago', '/img/goods.svg', 'over', 9.99)"
                    for i in range(start, min(n, start + 1000)))
    print(f"INSERT INTO goods (name, title, img, detail, price) VALUES {rows};")
print("INSERT INTO seckill_goods (goods_id, seckill_price, stock, initial_stock, start_at, end_at) "
      "SELECT id, 1, 10, 10, NOW(3) - INTERVAL 2 DAY, NOW(3) - INTERVAL 1 DAY FROM goods "
      f"WHERE name LIKE 'history {batch}-%';")
PY
  sql "source $work/history.sql"
  local t0
  t0=$(date +%s)
  while [ "$(sql "SELECT COUNT(*) FROM seckill_goods WHERE settled_at IS NULL")" != 0 ]; do
    [ $(($(date +%s) - t0)) -lt 600 ] || { echo "the history did not settle in 10 minutes" >&2; exit 1; }
    sleep 2
  done
  echo $(($(date +%s) - t0))
}
echo "== 2. $SALES ended sales: made in MySQL, loaded, audited and settled by the worker"
settle_s=$(history 1)
sleep 3
echo "== 2. idle with $SALES settled sales (${IDLE}s)"
read -r cpu1 cmd1 rss1 <<<"$(idle "$all")"
echo "== 2. $SALES more (twice the history), settled; idle again (${IDLE}s)"
settle2_s=$(history 2)
sleep 3
read -r cpu2 cmd2 rss2 <<<"$(idle "$all")"
catalogue=$(curl -fsS "http://127.0.0.1:$PORT/api/goods" | wc -c)
past=$(curl -fsS "http://127.0.0.1:$PORT/api/goods?past=1" | wc -c)

echo "== 3. a sale of $BUYERS buyers, bought through the edge"
big=$("$bin" seed --stock "$BUYERS" --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)
other=$("$bin" seed --stock 100000000 --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)
"$bin" users --count "$BUYERS" --out "$work/tokens.csv" 2>/dev/null >/dev/null
P=0123456789abcdef0123456789abcdef
# every shopper holds the same hidden path digest in each sale, bound to their token
loadtest/seed-paths.py "$work/tokens.csv" "$ns" "$P" $big $other \
  | redis-cli --pipe >/dev/null
# wrk walks the tokens in order from the same places each run: after each run, the shoppers
# who have not bought yet are the next run's tokens
cp "$work/tokens.csv" "$work/left.csv"
while [ "$(redis-cli GET "${ns}sk:{g:$big}:stock")" != 0 ]; do
  TOKENS="$work/left.csv" GOODS=$big HIDDEN_PATH=$P wrk -t2 -c50 -d10s -s loadtest/wrk/buy.lua \
    "http://127.0.0.1:$PORT" >/dev/null
  redis-cli SMEMBERS "${ns}sk:{g:$big}:buyers" | sort >"$work/bought.txt"
  { echo "userId,token"; tail -n +2 "$work/tokens.csv" | sort -t, -k1,1 | join -t, -v 1 - "$work/bought.txt"; } >"$work/left.csv"
done
while [ "$(redis-cli XLEN "${ns}sk:{g:$big}:queue")" != 0 ]; do sleep 1; done
buyers=$(redis-cli SCARD "${ns}sk:{g:$big}:buyers")

redis-cli CONFIG SET slowlog-max-len 100000 >/dev/null
redis-cli CONFIG SET slowlog-log-slower-than 1000 >/dev/null
# this run's commands in the slow log, slowest first: "µs command key"
slow() {
  redis-cli SLOWLOG GET 100000 >"$work/slowlog.txt"
  python3 - "$work/slowlog.txt" "$ns" <<'PY'
import sys
lines = [l.rstrip("\n") for l in open(sys.argv[1])]
ns = sys.argv[2]
out = []
i = 0
while i + 3 < len(lines):
    # redis-cli prints each entry as: id, unix time, duration, then the argv, client, name
    if lines[i].isdigit() and lines[i + 1].isdigit() and lines[i + 2].isdigit():
        us = int(lines[i + 2]); j = i + 3; argv = []
        while j < len(lines) and not (lines[j].isdigit() and j + 2 < len(lines) and lines[j + 1].isdigit() and lines[j + 2].isdigit()):
            argv.append(lines[j]); j += 1
        if any(ns in a for a in argv):
            out.append((us, argv[0] if argv else "?", next((a for a in argv if ns in a), "")))
        i = j
    else:
        i += 1
for us, cmd, key in sorted(out, reverse=True):
    print(us, cmd, key)
PY
}
echo "== 3. ${WINDOW}s of Redis's slow log (> 1 ms) with the sale at rest: the worker alone"
redis-cli SLOWLOG RESET >/dev/null
sleep "$WINDOW"
slow >"$work/slow-worker.txt"
echo "== 3. two on-demand full audits of the sale (flashgate audit ID)"
redis-cli SLOWLOG RESET >/dev/null
start=$(date +%s)
"$bin" audit "$big" >"$work/audit1.txt" 2>&1 || true
audit_s=$(($(date +%s) - start))
"$bin" audit "$big" >"$work/audit2.txt" 2>&1 || true
slow >"$work/slow-audit.txt"
redis-cli SLOWLOG RESET >/dev/null
redis-cli SMEMBERS "${ns}sk:{g:$big}:buyers" >/dev/null
old=$(redis-cli SLOWLOG GET 1 | sed -n 3p)
redis-cli CONFIG SET slowlog-log-slower-than "$slowlog_was" >/dev/null

echo "== 4. the buy path's p99 with the on-demand audit beside it, and without"
R_ON=() R_OFF=() R_ONR=() R_OFFR=()
wrk_p99() {
  local out
  out=$(TOKENS="$work/tokens.csv" GOODS=$other HIDDEN_PATH=$P wrk -t2 -c50 -d"${DUR}s" --latency \
    -s loadtest/wrk/buy.lua "http://127.0.0.1:$PORT")
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
}
for round in $(seq "$ROUNDS"); do
  echo "== round $round/$ROUNDS"
  read -r r p <<<"$(wrk_p99)"
  R_OFF+=("$p") R_OFFR+=("$r")
  ( end=$(($(date +%s) + DUR)); while [ "$(date +%s)" -lt "$end" ]; do "$bin" audit "$big" >/dev/null 2>&1 || true; done ) &
  auditor=$!
  read -r r p <<<"$(wrk_p99)"
  wait "$auditor" || true
  R_ON+=("$p") R_ONR+=("$r")
done

echo
echo "flashgate history bench — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
echo
echo "| idle flashgate all (${IDLE}s) | CPU % of a core | Redis commands/s | RSS MiB |"
echo "|---|---:|---:|---:|"
echo "| no sales | $cpu0 | $cmd0 | $rss0 |"
echo "| $SALES ended sales, settled | $cpu1 | $cmd1 | $rss1 |"
echo "| $((2 * SALES)) ended sales, settled | $cpu2 | $cmd2 | $rss2 |"
echo
echo "the worker settled $SALES ended sales in ${settle_s}s, then $SALES more in ${settle2_s}s (each loaded, audited once, left alone); GET /api/goods: $catalogue bytes (past page 1: $past bytes)"
echo "sale $big: $buyers buyers at rest; on-demand full audit: ${audit_s}s ($(grep -o 'clean\|DRIFT\|NOT AT REST' "$work/audit1.txt" | head -n 1))"
echo "Redis slow log (> 1 ms, this run's keys), ${WINDOW}s of the worker with the sale at rest: $(wc -l <"$work/slow-worker.txt") commands; slowest: $(head -n 1 "$work/slow-worker.txt" | grep . || echo none)"
echo "Redis slow log during two on-demand full audits: $(wc -l <"$work/slow-audit.txt") commands; slowest: $(head -n 1 "$work/slow-audit.txt" | grep . || echo none)"
echo "for scale: one SMEMBERS of that buyer set (what the audit sent before) took ${old:-?} us in Redis"
echo
echo "| buy path, 50 connections, ${DUR}s, $ROUNDS rounds | req/s | p99 ms |"
echo "|---|---:|---:|"
echo "| alone | $(median "${R_OFFR[@]}") | $(median "${R_OFF[@]}") [$(IFS=/; echo "${R_OFF[*]}")] |"
echo "| with the full audit of the $BUYERS-buyer sale in a loop beside it | $(median "${R_ONR[@]}") | $(median "${R_ON[@]}") [$(IFS=/; echo "${R_ON[*]}")] |"
