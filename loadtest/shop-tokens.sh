#!/usr/bin/env bash
# The buy with a shop's JWT (FLASHGATE_AUTH=both, docs/integration.md) against the buy with a
# flashgate session token, in the same rounds, and what a token's first verification costs per
# algorithm (EdDSA, ES256, RS256).
#
# Each round starts a fresh edge (its maps empty: the first sale after start) and runs, for each
# kind of token in turn (session, EdDSA, ES256, RS256), two wrk passes at 50 connections in
# which every shopper buys once (wrk/buy.lua's ONCE), each on a fresh sale whose every shopper
# already holds a path bound to their token (loadtest/seed-paths.py):
#   warm:     every buy is a token's first request on this edge: for a JWT, its first
#             verification (a signature check);
#   measured: every buy is the shopper's first in that sale, the token already verified once on
#             this edge ("verified once per edge"): the buy path as shops' shoppers meet it.
# Edge CPU from /proc/PID/stat per request. The first-verification cost of an algorithm is its
# warm pass's edge CPU per buy minus its measured pass's. The shop subjects are users rows made
# by SQL (as the first path request would make them), the tokens signed by
# loadtest/shop-tokens.mjs, the shop's key set served by a local python3 http.server.
# Ends by checking, for every sale, that the units taken from its stock are its buyers, one each.
#
# Usage: loadtest/shop-tokens.sh   (SHOP_ROUNDS=3 SHOP_USERS=60000)
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
need_wrk
ROUNDS=${SHOP_ROUNDS:-3}
USERS=${SHOP_USERS:-60000}
PORT=${SHOP_PORT:-18680}
JWKS_PORT=$((PORT + 1))
./scripts/services >/dev/null
cargo build --release -q
bin="$PWD/target/release/flashgate"
work=$(mktemp -d)
ns="shopbench$$:"
db="flashgate_shopbench_$$"
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db" FLASHGATE_NAMESPACE="$ns"
export FLASHGATE_METRICS_PUBLIC=on # the figures are read from the edge's /metrics
export FLASHGATE_CAPTCHA=off FLASHGATE_LOG=warn FLASHGATE_ADMIN_LISTEN=off FLASHGATE_PATH_FACTOR=1
export FLASHGATE_GATE_RATE=1000000000 FLASHGATE_GATE_BURST=1000000000
export FLASHGATE_AUTH=both FLASHGATE_JWT_ISSUER=https://shop.bench FLASHGATE_JWT_AUDIENCE=flashgate
export FLASHGATE_JWT_JWKS_URL="http://127.0.0.1:$JWKS_PORT/jwks.json"
edge="" jwks=""
cleanup() {
  [ -n "$edge" ] && kill "$edge" 2>/dev/null || true
  [ -n "$jwks" ] && kill "$jwks" 2>/dev/null || true
  wait 2>/dev/null || true
  redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`"
  rm -rf "$work"
}
trap cleanup EXIT
P=0123456789abcdef0123456789abcdef
"$bin" migrate 2>/dev/null
"$bin" users --count "$USERS" --out "$work/session.csv" 2>/dev/null >/dev/null
# the shop's shoppers: a users row per subject (what their first path request would make)
mariadb -uroot -h127.0.0.1 "$db" -e "INSERT INTO users (mobile, nickname, password, salt, subject) \
  SELECT NULL, CONCAT('shopper-', seq), '', '', CONCAT('shopper-', seq) FROM seq_1_to_$USERS"
mariadb -uroot -h127.0.0.1 -N -B "$db" -e "SELECT id, subject FROM users WHERE subject IS NOT NULL" >"$work/subjects.tsv"
kinds=(session EdDSA ES256 RS256)
for alg in EdDSA ES256 RS256; do
  node loadtest/shop-tokens.mjs "$alg" "$FLASHGATE_JWT_ISSUER" "$FLASHGATE_JWT_AUDIENCE" \
    "$work/$alg.csv" "$work/jwks.json" <"$work/subjects.tsv"
done
(cd "$work" && exec python3 -m http.server "$JWKS_PORT" --bind 127.0.0.1 >/dev/null 2>&1) &
jwks=$!
sleep 1
metric() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
sales=()
sale() { # a fresh sale whose every shopper of tokens.csv holds a path
  local g
  g=$("$bin" seed --stock 100000000 --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)
  loadtest/seed-paths.py "$1" "$ns" "$P" "$g" | redis-cli --pipe >/dev/null
  echo "$g"
}
pass() { # tokens.csv goods -> "rps p99ms edge-us-per-buy requests"
  # wrk runs for its whole -d even once every thread has stopped; so it is interrupted as soon as
  # every shopper is admitted, and buys/s is the admitted shoppers over this script's own clock
  # from wrk's start to then (wrk's own rate divides by however long it went on)
  local out e0 e1 n w want t0 t1 got
  want=$(($(wc -l <"$1") - 1))
  e0=$(cpu "$edge")
  t0=$(date +%s.%N)
  ONCE=1 TOKENS="$1" GOODS=$2 HIDDEN_PATH=$P wrk -t2 -c50 -d120s --latency -s loadtest/wrk/buy.lua \
    "http://127.0.0.1:$PORT" >"$work/wrk.out" &
  w=$!
  until_bought "$ns" "$2" "$want" "$w"
  t1=$(date +%s.%N)
  got=$(redis-cli SCARD "${ns}sk:{g:$2}:buyers")
  kill -INT "$w" 2>/dev/null || true
  wait "$w" || true
  e1=$(cpu "$edge")
  out=$(cat "$work/wrk.out")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$(awk -v g="$got" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", g / (b - a)}') $(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")") $(us_per "$e0" "$e1" "$n") $n"
}
declare -A W M
for round in $(seq "$ROUNDS"); do
  FLASHGATE_LISTEN="127.0.0.1:$PORT" "$bin" serve 2>>"$work/serve.log" &
  edge=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 1
  for kind in "${kinds[@]}"; do
    g1=$(sale "$work/$kind.csv"); g2=$(sale "$work/$kind.csv"); sales+=("$g1" "$g2")
    w=$(pass "$work/$kind.csv" "$g1"); m=$(pass "$work/$kind.csv" "$g2")
    echo "round $round $kind: warm (rps p99ms edge-us/buy requests) = $w; measured = $m"
    W[$kind]+="$w"$'\n'; M[$kind]+="$m"$'\n'
  done
  echo "  verified by signature: $(metric flashgate_shop_tokens_verified_total), from the edge's copies: $(metric flashgate_shop_tokens_cached_total), refused: $(metric flashgate_shop_tokens_refused_total)"
  kill "$edge"; wait "$edge" 2>/dev/null || true; edge=""
done
col() { awk -v c="$2" 'NF {print $c}' <<<"$1" | paste -sd/; }
med() { median $(tr / ' ' <<<"$1"); }
echo
echo "shop tokens vs session tokens, $ROUNDS rounds, $USERS shoppers each buying once a pass, a fresh edge a round, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "| token | buys/s (verified once) | vs session | p99 ms | edge CPU us/buy | vs session | first verification, edge CPU us |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for kind in "${kinds[@]}"; do
  rps=$(col "${M[$kind]}" 1); us=$(col "${M[$kind]}" 3)
  ratio=$(paste -d' ' <(col "${M[$kind]}" 1 | tr / '\n') <(col "${M[session]}" 1 | tr / '\n') | awk '{printf "%.2f\n", $1 / $2}' | paste -sd/)
  cost=$(paste -d' ' <(col "${M[$kind]}" 3 | tr / '\n') <(col "${M[session]}" 3 | tr / '\n') | awk '{printf "%.2f\n", $1 / $2}' | paste -sd/)
  first=$(paste -d' ' <(col "${W[$kind]}" 3 | tr / '\n') <(col "${M[$kind]}" 3 | tr / '\n') | awk '{printf "%.1f\n", $1 - $2}' | paste -sd/)
  echo "| $kind | $(med "$rps") [$rps] | $(med "$ratio") [$ratio] | $(med "$(col "${M[$kind]}" 2)") [$(col "${M[$kind]}" 2)] | $(med "$us") [$us] | $(med "$cost") [$cost] | $([ "$kind" = session ] && echo — || echo "$(med "$first") [$first]") |"
done
bad=0
for g in "${sales[@]}"; do
  left=$(redis-cli GET "${ns}sk:{g:$g}:stock"); buyers=$(redis-cli SCARD "${ns}sk:{g:$g}:buyers")
  [ $((100000000 - left)) = "$buyers" ] || { echo "sale $g: $((100000000 - left)) units taken, $buyers buyers" >&2; bad=1; }
done
[ "$bad" = 0 ] && echo "invariants: in every sale (${#sales[@]}) the units taken are its buyers, one each"
exit "$bad"
