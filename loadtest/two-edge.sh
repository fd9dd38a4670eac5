#!/usr/bin/env bash
# The buy on an edge that never saw the shopper's session (several edges behind a balancer: the
# path request went to another edge), this revision against another one, interleaved.
#
# Each round, for each binary in turn: a fresh edge (so every round is that edge's first sale
# after start, its maps empty), a fresh sale of huge stock whose every shopper already holds a
# path (loadtest/seed-paths.py: bound to their token for this revision, the bare digest for a
# revision before paths were bound, where the edge then reads each session from Redis: cold),
# wrk buying for TWO_EDGE_DURATION seconds at 50 connections with every buy a shopper's first,
# then the edge's /healthz. Edge and redis-server CPU from /proc/PID/stat, per request.
# Prints every round and the medians; ends by checking that no sale sold more than it admitted.
#
# Usage: TWO_EDGE_BASELINE=/path/to/older/flashgate loadtest/two-edge.sh
#        (TWO_EDGE_ROUNDS=3 TWO_EDGE_DURATION=5 TWO_EDGE_USERS=400000; without a baseline, this
#        revision alone; TWO_EDGE_PERF=FILE records a perf profile of this revision's first run;
#        TWO_EDGE_BIN=path runs that binary as this revision instead of building target/release;
#        TWO_EDGE_REDIS_PORT=16390: the port of the redis-server this run starts for itself, so
#        its Redis CPU is this run's alone, not that of whatever else uses the shared one;
#        TWO_EDGE_PER_BUY2=1 adds a third row: this revision on a sale of perBuy 2 and perAccount 2,
#        every buy 2 units (its Redis CPU is per admitted buy, not per unit);
#        TWO_EDGE_BASELINE_BARE=1 for a baseline from before paths were bound to tokens, 6298e7a)
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
need_wrk
ROUNDS=${TWO_EDGE_ROUNDS:-3}
DUR=${TWO_EDGE_DURATION:-5}
USERS=${TWO_EDGE_USERS:-400000}
PORT=${TWO_EDGE_PORT:-18580}
./scripts/services >/dev/null
[ -n "${TWO_EDGE_BIN:-}" ] || cargo build --release -q
bins=("${TWO_EDGE_BIN:-$PWD/target/release/flashgate}")
names=("this")
if [ -n "${TWO_EDGE_BASELINE:-}" ]; then bins+=("$TWO_EDGE_BASELINE"); names+=("baseline"); fi
if [ "${TWO_EDGE_PER_BUY2:-0}" = 1 ]; then bins+=("${bins[0]}"); names+=("this-perBuy2"); fi

work=$(mktemp -d)
ns="twoedge$$:"
db="flashgate_twoedge_$$"
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db" FLASHGATE_NAMESPACE="$ns"
export FLASHGATE_METRICS_PUBLIC=on # the figures are read from the edge's /metrics
export FLASHGATE_CAPTCHA=off FLASHGATE_LOG=warn FLASHGATE_ADMIN_LISTEN=off FLASHGATE_PATH_FACTOR=1
export FLASHGATE_GATE_RATE=1000000000 FLASHGATE_GATE_BURST=1000000000
edge=""
# a redis-server of this run's own (nothing kept on disk): its CPU time is this run's
rport=${TWO_EDGE_REDIS_PORT:-16390}
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >/dev/null 2>&1 &
redis_pid=$!
redis-cli() { command redis-cli -p "$rport" "$@"; }
export FLASHGATE_REDIS_URL="redis://127.0.0.1:$rport/" SEED_REDIS_URL="redis://127.0.0.1:$rport/"
for _ in $(seq 50); do redis-cli PING >/dev/null 2>&1 && break; sleep 0.1; done
cleanup() {
  [ -n "$edge" ] && kill "$edge" 2>/dev/null || true
  kill "$redis_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`"
  rm -rf "$work"
}
trap cleanup EXIT
P=0123456789abcdef0123456789abcdef
"${bins[0]}" migrate 2>/dev/null
"${bins[0]}" users --count "$USERS" --out "$work/tokens.csv" 2>/dev/null >/dev/null
metric() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
run() { # binary bare units -> "buys/s p99ms edge-us redis-us-per-admitted healthz/s healthz-edge-us sessions-read"
  local bin=$1 bare=$2 units=$3 g out e0 e1 r0 r1 q n rps p99 hr he rules=()
  [ "$units" = 2 ] && rules=(--per-buy 2 --per-account 2)
  g=$("$bin" seed --stock 100000000 --starts-in 0 --lasts 3600 "${rules[@]}" 2>/dev/null | tail -n 1)
  loadtest/seed-paths.py $([ "$bare" = 1 ] && echo --bare) "$work/tokens.csv" "$ns" "$P" "$g" \
    | redis-cli --pipe >/dev/null
  FLASHGATE_LISTEN="127.0.0.1:$PORT" "$bin" serve 2>>"$work/serve.log" &
  edge=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 1 # subscribed to the logouts (this revision) / the session revocations (before)
  e0=$(cpu "$edge"); r0=$(cpu "$redis_pid")
  # TWO_EDGE_PERF=FILE: a CPU profile of this revision's edge during its first buy run
  if [ -n "${TWO_EDGE_PERF:-}" ] && [ "$bare" = 0 ] && [ ! -e "$TWO_EDGE_PERF" ]; then
    perf record -F 999 -g -p "$edge" -o "$TWO_EDGE_PERF" -- sleep "$DUR" >/dev/null 2>&1 &
  fi
  out=$(TOKENS="$work/tokens.csv" GOODS=$g HIDDEN_PATH=$P HIDDEN_PATH_BARE=$bare QUANTITY=$units \
    wrk -t2 -c50 -d"${DUR}s" --latency -s loadtest/wrk/buy.lua "http://127.0.0.1:$PORT")
  e1=$(cpu "$edge"); r1=$(cpu "$redis_pid")
  q=$(metric 'flashgate_admissions_total{outcome="queued"}')
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  local sess=$(( $(metric flashgate_sessions_read_total) + 0 ))
  local he0 he1 hout
  he0=$(cpu "$edge")
  hout=$(wrk -t2 -c50 -d"${DUR}s" "http://127.0.0.1:$PORT/healthz")
  he1=$(cpu "$edge")
  hr=$(awk '/Requests\/sec/ {print $2}' <<<"$hout")
  he=$(us_per "$he0" "$he1" "$(awk '/requests in/ {print $1}' <<<"$hout")")
  kill "$edge"; wait "$edge" 2>/dev/null || true; edge=""
  echo "$rps $p99 $(us_per "$e0" "$e1" "$n") $(us_per "$r0" "$r1" "$q") $hr $he $sess $q $n"
}
declare -A R
for round in $(seq "$ROUNDS"); do
  for i in "${!bins[@]}"; do
    bare=0
    [ "${names[$i]}" = baseline ] && bare=${TWO_EDGE_BASELINE_BARE:-0}
    units=1
    [ "${names[$i]}" = this-perBuy2 ] && units=2
    line=$(run "${bins[$i]}" "$bare" "$units")
    echo "round $round ${names[$i]}: buys/s p99ms edge-us/buy redis-us/admitted healthz/s edge-us/healthz sessions-read queued requests = $line"
    R[${names[$i]}]+="$line"$'\n'
  done
done
echo
echo "two edges (the buy on an edge that never saw the session), $ROUNDS rounds interleaved, ${DUR}s each, $USERS shoppers, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "| revision | buys/s | buys/healthz | p99 ms | edge CPU us/buy | edge CPU buy/healthz | Redis CPU us/admitted buy |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for name in "${names[@]}"; do
  col() { awk -v c="$1" 'NF {print $c}' <<<"${R[$name]}" | paste -sd/; }
  ratio_col() { awk -v a="$1" -v b="$2" 'NF {printf "%.2f\n", $a / $b}' <<<"${R[$name]}" | paste -sd/; }
  med() { median $(tr / ' ' <<<"$1"); }
  echo "| $name | $(med "$(col 1)") [$(col 1)] | $(med "$(ratio_col 1 5)") [$(ratio_col 1 5)] | $(med "$(col 2)") [$(col 2)] | $(med "$(col 3)") [$(col 3)] | $(med "$(ratio_col 3 6)") [$(ratio_col 3 6)] | $(med "$(col 4)") [$(col 4)] |"
done
