#!/usr/bin/env bash
# What one decided shopper costs Redis, by how many shoppers share an admit.lua call: for N in
# ADMIT_COST_SIZES (default 1 8 16 32), redis-benchmark sends EVALSHA of lua/admit.lua as
# shipped with N random shoppers per call, each holding their own key with the benchmark path
# (ADMIT_COST_USERS of them are set up first), huge stock, so each is admitted unless drawn
# twice; Redis's own INFO commandstats give the microseconds per call; divided by N, per
# shopper. Prints a table: N, calls/s, shoppers/s, Redis us per call, Redis us per shopper.
#
# Usage: loadtest/admit-cost.sh   (ADMIT_COST_SIZES="1 8 16 32" ADMIT_COST_CALLS=20000
#        ADMIT_COST_USERS=300000 BENCH_CONNECTIONS=50)
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
trap 'redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null' EXIT
redis-cli HSET "${k}meta" start_ms 0 end_ms 99999999999999 user_rate 1000 user_burst 1000 \
  gate_rate 1000000000 gate_burst 1000000000 >/dev/null
redis-cli SET "${k}stock" 1000000000000 >/dev/null
# every user id redis-benchmark can draw (__rand_int__: 12 digits, 0 to USERS-1) holds the path
awk -v k="${k}u:" -v p="$P" -v r="$USERS" 'BEGIN { for (i = 0; i < r; i++) {
  f = k sprintf("%012d", i); printf "*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$32\r\n%s\r\n$2\r\nEX\r\n$4\r\n3600\r\n", length(f), f, p } }' \
  | redis-cli --pipe >/dev/null
sha=$(redis-cli SCRIPT LOAD "$(cat lua/codes.lua lua/admit.lua)")

echo "| shoppers per call | calls/s | shoppers/s | Redis us per call | Redis us per shopper |"
echo "|---:|---:|---:|---:|---:|"
for n in $SIZES; do
  keys=("${k}meta" "${k}stock" "${k}buyers" "${k}gate" "${k}queue")
  args=("")
  for _ in $(seq "$n"); do
    keys+=("${k}u:__rand_int__")
    args+=(__rand_int__ "$P" 0f0e0d0c-0b0a-4000-8000-000000000001 "")
  done
  redis-cli CONFIG RESETSTAT >/dev/null
  line=$(redis-benchmark -c "$CONNS" -P 1 -n "$CALLS" -r "$USERS" --csv \
    EVALSHA "$sha" "${#keys[@]}" "${keys[@]}" "${args[@]}" | tail -n 1)
  rps=$(echo "$line" | awk -F'","' '{print $2}')
  us=$(redis-cli INFO commandstats | awk -F'[=,]' '/^cmdstat_evalsha:/ {print $6}')
  awk -v n="$n" -v r="$rps" -v u="$us" 'BEGIN { printf "| %d | %.0f | %.0f | %.1f | %.1f |\n", n, r, r * n, u, u / n }'
  redis-cli DEL "${k}queue" "${k}buyers" >/dev/null
done
