#!/usr/bin/env bash
# What one decided shopper costs Redis, by how many shoppers share an admit.lua call: for N in
# ADMIT_COST_SIZES (default 1 8 32), redis-benchmark sends EVALSHA of lua/admit.lua with N random
# shoppers per call (every shopper holds the benchmark path, huge stock, so each is admitted),
# and Redis's own INFO commandstats give the microseconds per call; divided by N, per shopper.
# Prints a table: N, calls/s, shoppers/s, Redis us per call, Redis us per shopper.
#
# Usage: loadtest/admit-cost.sh   (ADMIT_COST_SIZES="1 8 32" ADMIT_COST_CALLS=20000 BENCH_CONNECTIONS=50)
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${ADMIT_COST_SIZES:-1 8 32}
CALLS=${ADMIT_COST_CALLS:-20000}
CONNS=${BENCH_CONNECTIONS:-50}
command -v redis-benchmark >/dev/null || { echo "needs redis-benchmark (apt-get install redis-tools)" >&2; exit 1; }
ns="cost$$:"
k="${ns}sk:{g:1}:"
P=0123456789abcdef0123456789abcdef
trap 'redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null' EXIT
redis-cli HSET "${k}meta" start_ms 0 end_ms 99999999999999 user_rate 1000 user_burst 1000 \
  gate_rate 1000000000 gate_burst 1000000000 >/dev/null
redis-cli SET "${k}stock" 1000000000000 >/dev/null
redis-cli SET "${k}path:bench" "$P" >/dev/null
sha=$(redis-cli SCRIPT LOAD "$(cat lua/codes.lua lua/admit.lua)")

echo "| shoppers per call | calls/s | shoppers/s | Redis us per call | Redis us per shopper |"
echo "|---:|---:|---:|---:|---:|"
for n in $SIZES; do
  keys=("${k}meta" "${k}stock" "${k}buyers" "${k}gate" "${k}queue")
  args=("")
  for _ in $(seq "$n"); do
    # the same path key for all (every shopper "holds" it); random users and buckets
    keys+=("${k}path:bench" "${k}bucket:__rand_int__")
    args+=(__rand_int__ "$P" bench "")
  done
  redis-cli CONFIG RESETSTAT >/dev/null
  line=$(redis-benchmark -c "$CONNS" -P 1 -n "$CALLS" -r 1000000000 --csv \
    EVALSHA "$sha" "${#keys[@]}" "${keys[@]}" "${args[@]}" | tail -n 1)
  rps=$(echo "$line" | awk -F'","' '{print $2}')
  us=$(redis-cli INFO commandstats | awk -F'[=,]' '/^cmdstat_evalsha:/ {print $6}')
  awk -v n="$n" -v r="$rps" -v u="$us" 'BEGIN { printf "| %d | %.0f | %.0f | %.1f | %.1f |\n", n, r, r * n, u, u / n }'
  redis-cli DEL "${k}queue" "${k}buyers" >/dev/null
done
