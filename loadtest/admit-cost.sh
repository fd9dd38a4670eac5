#!/usr/bin/env bash
# What one decided shopper costs Redis, by how many shoppers share an admit.lua call: for N in
# ADMIT_COST_SIZES (default 1 8 16 32), redis-benchmark sends EVALSHA of lua/admit.lua as
# shipped with N random shoppers per call, each holding their own key with the benchmark path
# (ADMIT_COST_USERS of them are set up first), huge stock, so each is admitted unless drawn
# twice. Two figures per shopper: Redis's own INFO commandstats (the microseconds inside the
# script, wall time) and redis-server's whole CPU time read from /proc/PID/stat before and after
# the run (reading the calls off the socket, the script, the replies, feeding replicas: what a
# core pays), each divided by the shoppers decided. Prints a table: N, calls/s, shoppers/s, Redis
# us per call and per shopper by commandstats, Redis CPU us per shopper by /proc.
#
# ADMIT_COST_BASELINE=REV also runs the admit.lua of git revision REV right before the shipped
# one at each N, and prints the ratio: a baseline measured in the same run. Each script's KEYS
# follow its contract line: a key per shopper holding path and bucket (as shipped), or, before
# contract lines, a path key and a bucket key per shopper (a40dc0a is the last such).
#
# ADMIT_COST_FUNCTION=1 also runs the same script as a released version runs it: the shipped set
# released with `flashgate lua release` into this run's namespace (a Redis Functions library,
# docs/lua.md), called by FCALL right after the EVALSHA at each N, with the ratio.
#
# Usage: loadtest/admit-cost.sh   (ADMIT_COST_SIZES="1 8 16 32" ADMIT_COST_CALLS=20000
#        ADMIT_COST_USERS=300000 BENCH_CONNECTIONS=50 ADMIT_COST_BASELINE=a40dc0a
#        ADMIT_COST_FUNCTION=1)
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${ADMIT_COST_SIZES:-1 8 16 32}
CALLS=${ADMIT_COST_CALLS:-20000}
USERS=${ADMIT_COST_USERS:-300000}
CONNS=${BENCH_CONNECTIONS:-50}
command -v redis-benchmark >/dev/null || { echo "needs redis-benchmark (apt-get install redis-tools)" >&2; exit 1; }
ns="cost$$:"
k="${ns}sk:{g:1}:"
P=0123456789abcdef0123456789abcdef
lib="fg_$(printf '%s' "$ns" | sha1sum | cut -c1-8)_v1"
trap 'redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null
      redis-cli FUNCTION DELETE "$lib" >/dev/null 2>&1 || true' EXIT
redis-cli HSET "${k}meta" start_ms 0 end_ms 99999999999999 user_rate 1000 user_burst 1000 \
  gate_rate 1000000000 gate_burst 1000000000 >/dev/null
redis-cli SET "${k}stock" 1000000000000 >/dev/null
# every user id redis-benchmark can draw (__rand_int__: 12 digits, 0 to USERS-1) holds the path
# (and no bucket: written again before each run when a baseline runs too, as the forms differ in
# where they keep it)
set_users() {
  awk -v k="${k}u:" -v p="$P" -v r="$USERS" 'BEGIN { for (i = 0; i < r; i++) {
    f = k sprintf("%012d", i); printf "*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$32\r\n%s\r\n$2\r\nEX\r\n$4\r\n3600\r\n", length(f), f, p } }' \
    | redis-cli --pipe >/dev/null
}
set_users
sha=$(redis-cli SCRIPT LOAD "$(cat lua/codes.lua lua/admit.lua)")
BASE=${ADMIT_COST_BASELINE:-}
if [ -n "$BASE" ]; then
  base_sha=$(redis-cli SCRIPT LOAD "$(git show "$BASE:lua/codes.lua"; echo; git show "$BASE:lua/admit.lua")")
  redis-cli SET "${k}path:bench" "$P" EX 3600 >/dev/null
  base_form=$(git show "$BASE:lua/admit.lua" | head -n 1)
fi

FUNC=${ADMIT_COST_FUNCTION:-}
if [ -n "$FUNC" ]; then
  cargo build --release -q
  FLASHGATE_NAMESPACE="$ns" FLASHGATE_LOG=warn target/release/flashgate lua release lua \
    --note "admit-cost" >/dev/null
fi

redis_pid=$(redis-cli INFO server | awk -F: '/^process_id/ {print $2+0}')
cpu() { awk '{print $14 + $15}' "/proc/$redis_pid/stat"; } # user+system ticks
tck=$(getconf CLK_TCK)
# one redis-benchmark run: "calls/s us-per-call cpu-us-per-call"
run() { # sha (or fcall:FUNCTION), then keys...; the arguments are in args
  local s=$1 line rps us c0 c1 cmd=(EVALSHA "$1") stat=evalsha
  shift
  if [ "${s#fcall:}" != "$s" ]; then cmd=(FCALL "${s#fcall:}"); stat=fcall; fi
  redis-cli CONFIG RESETSTAT >/dev/null
  c0=$(cpu)
  line=$(redis-benchmark -c "$CONNS" -P 1 -n "$CALLS" -r "$USERS" --csv \
    "${cmd[@]}" "$#" "$@" "${args[@]}" | tail -n 1)
  c1=$(cpu)
  rps=$(echo "$line" | awk -F'","' '{print $2}')
  us=$(redis-cli INFO commandstats | awk -F'[=,]' -v c="cmdstat_$stat:" '$1 ~ "^"c {print $6}')
  redis-cli DEL "${k}queue" "${k}buyers" >/dev/null
  echo "$rps $us $(awk -v a="$c0" -v b="$c1" -v n="$CALLS" -v t="$tck" 'BEGIN { printf "%.1f", (b - a) / t / n * 1e6 }')"
}
# the KEYS and ARGV of a call of N shoppers, by the script's contract line (its first line)
keys_for() { # contract-line n; sets keys and args
  keys=("${k}meta" "${k}stock" "${k}buyers" "${k}gate" "${k}queue")
  args=("")
  case "$1" in
    # campaigns (#42): one more key, the campaign's counter (a sale in none: unwritten)
    *"campaign user..."*) keys+=("${k}held" "${k}buys" "${k}campaign:held")
      for _ in $(seq "$2"); do keys+=("${k}u:__rand_int__")
        args+=(__rand_int__ "$P" 0f0e0d0c-0b0a-4000-8000-000000000001 "" 1 ""); done ;;
    # sale rules (#42): two more keys, a quantity and a key per shopper (1 and none here)
    *"buys user..."*) keys+=("${k}held" "${k}buys")
      for _ in $(seq "$2"); do keys+=("${k}u:__rand_int__")
        args+=(__rand_int__ "$P" 0f0e0d0c-0b0a-4000-8000-000000000001 "" 1 ""); done ;;
    *"queue user..."*) for _ in $(seq "$2"); do keys+=("${k}u:__rand_int__")
        args+=(__rand_int__ "$P" 0f0e0d0c-0b0a-4000-8000-000000000001 ""); done ;;
    # the oldest form: every shopper reads the one benchmark path key, buckets are random
    *) for _ in $(seq "$2"); do keys+=("${k}path:bench" "${k}bucket:__rand_int__")
        args+=(__rand_int__ "$P" 0f0e0d0c-0b0a-4000-8000-000000000001 ""); done ;;
  esac
}
row() { # label n rps us cpu-us
  awk -v l="$1" -v n="$2" -v r="$3" -v u="$4" -v c="$5" 'BEGIN { printf "| %s | %d | %.0f | %.0f | %.1f | %.1f | %.1f |\n", l, n, r, r * n, u, u / n, c / n }'
}

echo "| script | shoppers per call | calls/s | shoppers/s | Redis us per call (commandstats) | per shopper (commandstats) | Redis CPU us per shopper (/proc) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for n in $SIZES; do
  if [ -n "$BASE" ]; then
    keys_for "$base_form" "$n"
    set_users
    read -r brps bus bcpu < <(run "$base_sha" "${keys[@]}")
    row "$BASE" "$n" "$brps" "$bus" "$bcpu"
    set_users
  fi
  keys_for "$(head -n 1 lua/admit.lua)" "$n"
  read -r rps us ucpu < <(run "$sha" "${keys[@]}")
  row shipped "$n" "$rps" "$us" "$ucpu"
  if [ -n "$FUNC" ]; then
    read -r frps fus fcpu < <(run "fcall:${lib}_admit" "${keys[@]}")
    row "released (FCALL)" "$n" "$frps" "$fus" "$fcpu"
    awk -v a="$us" -v b="$fus" -v n="$n" 'BEGIN { printf "| FCALL / EVALSHA | %d | | | %.2fx | | |\n", n, b / a }'
  fi
  [ -n "$BASE" ] && awk -v a="$bus" -v b="$us" -v n="$n" 'BEGIN { printf "| shipped / %s | %d | | | %.2fx | | |\n", "baseline", n, b / a }'
done
