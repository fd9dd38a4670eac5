#!/usr/bin/env bash
# The draw sales' rows of loadtest/bench.sh (docs/draws.md), on their own sale and edge:
#   1. registration: DRAW_ENTRANTS (200,000) accounts enter one draw sale through the edge
#      (POST /api/draws/G/entries under wrk for DRAW_DURATION seconds, DRAW_CONNECTIONS
#      connections; each entrant once, unless the list runs out first: then it says so), each from its own
#      address (X-Forwarded-For, from a trusted proxy: this machine). Each proof is made here from
#      the sale's secret (sale_draw) with the number 0: the edge's check is one hash and one HMAC
#      whatever the work, so the bench spends no CPU solving. Prints entries/s (recorded in
#      Redis over the run's wall time) and the edge's and redis-server's CPU microseconds per
#      request (/proc/PID/stat before and after; the Redis is shared, so its figure holds
#      whatever else it served meanwhile).
#   2. the draw at DRAW_MILLION (1,000,000) entries: entries written into a second sale's Redis
#      keys as lua/draw_enter.lua leaves them (the entries hash and the log, redis-cli --pipe),
#      then `flashgate draw run` once registration closed: its wall time and, of it, the
#      ordering's (hashing and sorting on every core), and redis-server's CPU during it.
# Release build. Usage: loadtest/draw-bench.sh  (DRAW_ENTRANTS=200000 DRAW_MILLION=1000000
#   DRAW_DURATION=10 DRAW_CONNECTIONS=50 DRAW_PORT=18580 FLASHGATE_BIN: built in release if unset)
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
ENTRANTS=${DRAW_ENTRANTS:-200000}
DUR=${DRAW_DURATION:-10}
MILLION=${DRAW_MILLION:-1000000}
CONNS=${DRAW_CONNECTIONS:-50}
PORT=${DRAW_PORT:-18580}
need_wrk
bin=${FLASHGATE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q
  bin=$PWD/target/release/flashgate
fi
work=$(mktemp -d)
ns="drawbench$$:"
db="flashgate_drawbench_$$"
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db" FLASHGATE_NAMESPACE="$ns"
export FLASHGATE_LISTEN="127.0.0.1:$PORT" FLASHGATE_ADMIN_LISTEN=off FLASHGATE_LOG=warn
export FLASHGATE_CAPTCHA=off FLASHGATE_TRUSTED_PROXIES=127.0.0.1/32
export FLASHGATE_USER_RATE=1000000 FLASHGATE_USER_BURST=1000000
export FLASHGATE_DRAW_POW_MAX=${FLASHGATE_DRAW_POW_MAX:-300000}
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true
  redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`"
  rm -rf "$work"
}
trap cleanup EXIT
sql() { mariadb -uroot -h127.0.0.1 -N -B "$db" -e "$1"; }
draw_sale() { # registration opens in $1 ms for $2 ms; prints the goods id
  local from=$(($(date +%s%3N) + $1)) until
  until=$((from + $2))
  "$bin" sale create --json "{\"name\": \"Draw bench\", \"title\": \"Draw bench\", \"price\": 2,
    \"salePrice\": 1, \"stock\": 1000, \"startAt\": $until, \"endAt\": $((until + 3600000)),
    \"mode\": \"draw\", \"registerFrom\": $from, \"registerUntil\": $until, \"claimFor\": 600}" \
    2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["goodsId"])'
}
redis_pid=$(redis-cli INFO server | awk -F: '/^process_id/ {print $2+0}')

echo "== preparing: $ENTRANTS entrants, their proofs"
"$bin" migrate 2>/dev/null
"$bin" users --count "$ENTRANTS" --out "$work/tokens.csv" 2>/dev/null >/dev/null
reg=$(draw_sale 3000 3600000)
big=$(draw_sale 2000 4000)
python3 - "$work/tokens.csv" "$(sql "SELECT HEX(secret) FROM sale_draw WHERE goods_id = $reg")" \
  "$reg" "$FLASHGATE_DRAW_POW_MAX" > "$work/entries.tsv" <<'PY'
import base64, csv, hashlib, hmac, json, os, sys, time
tokens, secret, goods, m = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4]
expires = int(time.time()) + 600
for i, row in enumerate(csv.DictReader(open(tokens))):
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    addr = hmac.new(secret, f"flashgate-draw-address:{ip}".encode(), hashlib.sha256).hexdigest()[:16]
    salt = f"{os.urandom(12).hex()}?expires={expires}&g={goods}&a={addr}&m={m}&"
    challenge = hashlib.sha256(f"{salt}0".encode()).hexdigest()
    sig = hmac.new(secret, challenge.encode(), hashlib.sha256).hexdigest()
    sol = {"algorithm": "SHA-256", "challenge": challenge, "number": 0, "salt": salt, "signature": sig}
    print(f"{row['token']}\t{base64.b64encode(json.dumps(sol).encode()).decode()}\t{ip}")
PY
"$bin" serve 2>"$work/serve.log" & pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
while [ "$(curl -fsS "http://127.0.0.1:$PORT/api/draws/$reg" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["phase"])')" != registering ]; do sleep 0.2; done

echo "== 1. entries through the edge (wrk, $CONNS connections, ${DUR}s, $ENTRANTS entrants)"
e0=$(cpu "$pid"); r0=$(cpu "$redis_pid"); t0=$(date +%s%N)
ENTRIES="$work/entries.tsv" GOODS=$reg THREADS=2 \
  wrk -t2 -c"$CONNS" -d"${DUR}s" -s loadtest/wrk/entries.lua "http://127.0.0.1:$PORT" >"$work/wrk.txt"
t1=$(date +%s%N); e1=$(cpu "$pid"); r1=$(cpu "$redis_pid")
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
entered=$(redis-cli HLEN "${ns}sk:{g:$reg}:draw:entries")
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", (b - a) / 1e9}')
ran_out=""
[ "$entered" -ge "$ENTRANTS" ] && ran_out=" (every entrant entered before the end: raise DRAW_ENTRANTS for a true rate)"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

echo "== 2. the draw at $MILLION entries (goods $big)"
python3 - "$MILLION" "${ns}sk:{g:$big}" <<'PY' | redis-cli --pipe >/dev/null
import sys
n, k = int(sys.argv[1]), sys.argv[2]
out = sys.stdout.buffer
def cmd(*a):
    out.write(b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in (s.encode() for s in a)))
for start in range(0, n, 1000):
    ids = range(start + 1, min(n, start + 1000) + 1)
    cmd("HSET", f"{k}:draw:entries", *[x for u in ids for x in (str(u), str(u))])
    cmd("APPEND", f"{k}:draw:log", "".join(f"{u:016x}" for u in ids))
PY
until_ms=$(sql "SELECT UNIX_TIMESTAMP(register_until) * 1000 FROM sale_draw WHERE goods_id = $big" | cut -d. -f1)
while [ "$(date +%s%3N)" -lt "$until_ms" ]; do sleep 0.1; done
d0=$(cpu "$redis_pid")
drawn=$("$bin" draw run "$big" 2>/dev/null | tail -n 1)
d1=$(cpu "$redis_pid")

echo
echo "| draws | figure |"
echo "|---|---|"
echo "| registration: entries through the edge | $entered recorded in ${secs}s: $(awk -v n="$entered" -v s="$secs" 'BEGIN {printf "%.0f", n / s}') entries/s ($requests requests)$ran_out |"
echo "| registration: edge CPU per request | $(us_per "$e0" "$e1" "$requests") us |"
echo "| registration: Redis CPU per request | $(us_per "$r0" "$r1" "$requests") us |"
echo "| the draw at $MILLION entries (flashgate draw run, $(basename "$(dirname "$bin")") build) | $(echo "$drawn" | python3 -c 'import json, sys; d = json.load(sys.stdin); print("%s ms wall, of which ordering %s ms; %s entries" % (d["tookMs"], d["orderMs"], d["entries"]))') |"
echo "| the draw: Redis CPU | $(awk -v a="$d0" -v b="$d1" -v t="$tck" 'BEGIN {printf "%.0f", (b - a) / t * 1000}') ms |"
