#!/usr/bin/env bash
# Which FLASHGATE_ADMIT_BATCH is best here: the buy path under wrk (BENCH_CONNECTIONS, default
# 50) on an edge started with each cap in turn, a fresh sale per run, interleaved over rounds;
# prints requests/s, p50, p99 and the average shoppers per admit.lua call for each cap, as medians.
#
# Usage: loadtest/admit-batch-sweep.sh   (SWEEP_CAPS="1 4 8 16 32 64 128" SWEEP_ROUNDS=3
#                                          BENCH_DURATION=8 BENCH_CONNECTIONS=50)
set -euo pipefail
cd "$(dirname "$0")/.."

CAPS=${SWEEP_CAPS:-1 4 8 16 32 64 128}
ROUNDS=${SWEEP_ROUNDS:-3}
DUR=${BENCH_DURATION:-8}
CONNS=${BENCH_CONNECTIONS:-50}
PORT=${BENCH_PORT:-18180}
USERS=${BENCH_USERS:-100000}

./scripts/services >/dev/null
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q
bin=$PWD/target/release/flashgate
work=$(mktemp -d)
ns="sweep$$:"
db="flashgate_sweep_$$"
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db" FLASHGATE_NAMESPACE="$ns"
export FLASHGATE_METRICS_PUBLIC=on # the figures are read from the edge's /metrics
export FLASHGATE_CAPTCHA=off FLASHGATE_LISTEN="127.0.0.1:$PORT" FLASHGATE_ADMIN_LISTEN=off
export FLASHGATE_GATE_RATE=1000000000 FLASHGATE_GATE_BURST=1000000000 FLASHGATE_LOG=warn
edge=""
cleanup() {
  [ -n "$edge" ] && kill "$edge" 2>/dev/null; wait 2>/dev/null || true
  redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`"
  rm -rf "$work"
}
trap cleanup EXIT
"$bin" migrate 2>/dev/null
"$bin" users --count "$USERS" --out "$work/tokens.csv" 2>/dev/null >/dev/null
P=0123456789abcdef0123456789abcdef
n_caps=$(wc -w <<<"$CAPS")
sales=()
for _ in $(seq $((ROUNDS * n_caps))); do
  sales+=("$("$bin" seed --stock 100000000 --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)")
done
# every shopper holds the same hidden path digest in each sale, bound to their token
loadtest/seed-paths.py "$work/tokens.csv" "$ns" "$P" ${sales[*]} \
  | redis-cli --pipe >/dev/null

metric() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
to_ms() { echo "$1" | awk '/us$/ {sub(/us/,""); printf "%.3f", $1/1000; next} /ms$/ {sub(/ms/,""); printf "%.3f", $1; next} /s$/ {sub(/s/,""); printf "%.3f", $1*1000}'; }
declare -A RPS P50 P99 BATCH
i=0
for round in $(seq "$ROUNDS"); do
  for cap in $CAPS; do
    g=${sales[$i]}; i=$((i + 1))
    FLASHGATE_ADMIT_BATCH=$cap "$bin" serve 2>>"$work/serve.log" & edge=$!
    for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    out=$(TOKENS="$work/tokens.csv" GOODS=$g HIDDEN_PATH=$P wrk -t2 -c"$CONNS" -d"${DUR}s" --latency \
      -s loadtest/wrk/buy.lua "http://127.0.0.1:$PORT")
    sum=$(metric flashgate_admit_batch_size_sum); count=$(metric flashgate_admit_batch_size_count)
    kill "$edge"; wait "$edge" 2>/dev/null || true; edge=""
    RPS[$cap]+=" $(echo "$out" | awk '/Requests\/sec/ {print $2}')"
    P50[$cap]+=" $(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")"
    P99[$cap]+=" $(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")"
    BATCH[$cap]+=" $(awk -v s="$sum" -v c="$count" 'BEGIN { printf "%.1f", s / c }')"
    echo "round $round cap $cap: $(echo "$out" | awk '/Requests\/sec/ {print $2}')/s" >&2
  done
done
echo "| FLASHGATE_ADMIT_BATCH | buys/s (median) [rounds] | p50 ms | p99 ms | shoppers per call |"
echo "|---:|---:|---:|---:|---:|"
for cap in $CAPS; do
  # shellcheck disable=SC2086
  echo "| $cap | $(median ${RPS[$cap]}) [${RPS[$cap]# }] | $(median ${P50[$cap]}) | $(median ${P99[$cap]}) | $(median ${BATCH[$cap]}) |"
done
