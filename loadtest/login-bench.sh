#!/usr/bin/env bash
# Logins under Argon2id, and what a login storm does to the buy path, in one run:
#   0. `flashgate users --count 450000` (what a benchmark needs): wall time (one shared hash)
#   1. a login storm alone: logins/s, 503s (pool full), edge CPU µs per login, logins/s per core
#   2. the buy path alone (wrk, 50 connections) against 3. the buy path with a login storm beside
#      it, interleaved for LOGIN_BENCH_ROUNDS rounds, medians: req/s and p99.
# The bar: the storm may cut buys by at most the share of CPU the login bound allows
# (FLASHGATE_LOGIN_THREADS of nproc cores); the last line says pass or fail.
#
# Usage: loadtest/login-bench.sh   (LOGIN_BENCH_DURATION=10 LOGIN_BENCH_ROUNDS=3 LOGIN_BENCH_USERS=450000)
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${LOGIN_BENCH_DURATION:-10}
ROUNDS=${LOGIN_BENCH_ROUNDS:-3}
USERS=${LOGIN_BENCH_USERS:-450000}
CONNS=${LOGIN_BENCH_CONNECTIONS:-50}
STORM=${LOGIN_BENCH_STORM_CONNECTIONS:-100}
PORT=${LOGIN_BENCH_PORT:-18180}

source loadtest/lib.sh
./scripts/services >/dev/null
need_wrk
cargo build --release -q
bin=$PWD/target/release/flashgate

work=$(mktemp -d)
ns="lbench$$:"
db="flashgate_lbench_$$"
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db"
export FLASHGATE_NAMESPACE="$ns" FLASHGATE_CAPTCHA=off FLASHGATE_LISTEN="127.0.0.1:$PORT"
export FLASHGATE_GATE_RATE=1000000000 FLASHGATE_GATE_BURST=1000000000 FLASHGATE_LOG=warn
export FLASHGATE_ADMIN_LISTEN=off FLASHGATE_PATH_FACTOR=1
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`"
  rm -rf "$work"
}
trap cleanup EXIT
sql() { mariadb -uroot -h127.0.0.1 -N -B "$db" -e "$1"; }
# wrk's summary -> "rps p50 p99 non2xx"
summary() {
  local out=$1
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")") \
$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")") $(awk '/Non-2xx/ {print $5}' <<<"$out" | grep . || echo 0)"
}

"$bin" migrate 2>/dev/null
echo "== 0. flashgate users --count $USERS"
t0=$(date +%s.%N)
"$bin" users --count "$USERS" --out "$work/tokens.csv" 2>/dev/null >/dev/null
t1=$(date +%s.%N)
users_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
sql "SELECT mobile FROM users ORDER BY id" >"$work/mobiles.txt"
goods_list=()
for _ in $(seq $((ROUNDS * 2))); do
  goods_list+=("$("$bin" seed --stock 100000000 --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)")
done
P=0123456789abcdef0123456789abcdef
# every shopper holds the same hidden path digest in each sale, bound to their token
loadtest/seed-paths.py "$work/tokens.csv" "$ns" "$P" ${goods_list[*]} \
  | redis-cli --pipe >/dev/null

"$bin" serve 2>"$work/serve.log" & pids+=($!)
edge=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
threads=${FLASHGATE_LOGIN_THREADS:-1}

# the hashing threads' own CPU time (/proc/PID/task/TID/stat of the threads named login-hash-N):
# what one login's Argon2id check costs, apart from answering HTTP
hash_cpu() {
  local t sum=0
  for t in /proc/"$edge"/task/*; do
    [[ "$(cat "$t/comm")" == login-hash-* ]] && sum=$((sum + $(awk '{print $14 + $15}' "$t/stat")))
  done
  echo "$sum"
}
echo "== 1. a login storm alone ($STORM connections, ${DUR}s)"
c0=$(cpu "$edge") h0=$(hash_cpu)
out=$(MOBILES="$work/mobiles.txt" wrk -t2 -c"$STORM" -d"${DUR}s" --latency -s loadtest/wrk/login.lua "http://127.0.0.1:$PORT")
c1=$(cpu "$edge") h1=$(hash_cpu)
read -r l_rps l_p50 l_p99 l_busy <<<"$(summary "$out")"
l_total=$(awk '/requests in/ {print $1}' <<<"$out")
l_ok=$((l_total - l_busy))
l_cpu_us=$(awk -v a="$c0" -v b="$c1" -v t="$tck" -v n="$l_ok" 'BEGIN { printf "%.0f", (b - a) / t / n * 1e6 }')
l_hash_us=$(awk -v a="$h0" -v b="$h1" -v t="$tck" -v n="$l_ok" 'BEGIN { printf "%.0f", (b - a) / t / n * 1e6 }')
l_per_s=$(awk -v n="$l_ok" -v d="$DUR" 'BEGIN { printf "%.1f", n / d }')
l_per_core=$(awk -v us="$l_hash_us" 'BEGIN { printf "%.1f", 1e6 / us }')

R_A=() R_A99=() R_S=() R_S99=() R_SL=() R_SB=()
for round in $(seq "$ROUNDS"); do
  g_alone=${goods_list[$(((round - 1) * 2))]}
  g_storm=${goods_list[$(((round - 1) * 2 + 1))]}
  echo "== round $round/$ROUNDS: 2. the buy path alone ($CONNS connections)"
  out=$(TOKENS="$work/tokens.csv" GOODS=$g_alone HIDDEN_PATH=$P \
    wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s loadtest/wrk/buy.lua "http://127.0.0.1:$PORT")
  read -r a _ c _ <<<"$(summary "$out")"
  R_A+=("$a") R_A99+=("$c")
  echo "== round $round/$ROUNDS: 3. the buy path with a login storm beside it"
  MOBILES="$work/mobiles.txt" wrk -t1 -c"$STORM" -d"$((DUR + 2))s" --latency -s loadtest/wrk/login.lua \
    "http://127.0.0.1:$PORT" >"$work/storm.txt" &
  storm=$!
  sleep 1
  out=$(TOKENS="$work/tokens.csv" GOODS=$g_storm HIDDEN_PATH=$P \
    wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s loadtest/wrk/buy.lua "http://127.0.0.1:$PORT")
  wait "$storm"
  read -r a _ c _ <<<"$(summary "$out")"
  R_S+=("$a") R_S99+=("$c")
  read -r sl _ _ sb <<<"$(summary "$(cat "$work/storm.txt")")"
  R_SL+=("$sl") R_SB+=("$sb")
done

alone=$(median "${R_A[@]}") alone99=$(median "${R_A99[@]}")
storm_rps=$(median "${R_S[@]}") storm99=$(median "${R_S99[@]}")
share=$(awk -v t="$threads" -v n="$(nproc)" 'BEGIN { printf "%.2f", t / n }')
kept=$(awk -v a="$storm_rps" -v b="$alone" 'BEGIN { printf "%.2f", a / b }')
echo
echo "flashgate login bench — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load generator on the same box"
echo "Argon2id m=${FLASHGATE_PASSWORD_MEMORY_KIB:-19456} KiB t=${FLASHGATE_PASSWORD_ITERATIONS:-2} p=${FLASHGATE_PASSWORD_LANES:-1}; login pool: $threads thread(s) at nice ${FLASHGATE_LOGIN_NICE:-10}, queue ${FLASHGATE_LOGIN_QUEUE:-64}"
echo
echo "flashgate users --count $USERS: ${users_s} s"
echo "login storm alone ($STORM connections): $l_per_s logins/s, $l_busy answered 503 (pool full), p50 $l_p50 ms, p99 $l_p99 ms"
echo "one login's Argon2id check: $l_hash_us us of the hashing thread's CPU = $l_per_core logins/s per core; the whole edge spent $l_cpu_us us per successful login (answering the 503s included)"
echo
echo "| buy path ($CONNS connections, ${DUR}s, $ROUNDS rounds) | buys/s | p99 ms |"
echo "|---|---:|---:|"
echo "| alone | $alone [$(IFS=/; echo "${R_A[*]}")] | $alone99 [$(IFS=/; echo "${R_A99[*]}")] |"
echo "| with a login storm beside it | $storm_rps [$(IFS=/; echo "${R_S[*]}")] | $storm99 [$(IFS=/; echo "${R_S99[*]}")] |"
echo "the storm meanwhile: [$(IFS=/; echo "${R_SL[*]}")] requests/s, of which 503 (pool full): [$(IFS=/; echo "${R_SB[*]}")]"
echo
if awk -v k="$kept" -v s="$share" 'BEGIN { exit !(k >= 1 - s) }'; then
  echo "PASS: with the storm the buy path kept ${kept}x of its throughput; the login bound allows the storm $share of the CPU"
else
  echo "FAIL: with the storm the buy path kept ${kept}x of its throughput; the login bound allows the storm only $share of the CPU"
  exit 1
fi
