#!/usr/bin/env bash
# Push at scale: many shoppers holding event streams (GET /api/seckill/events) against ONE edge,
# on loopback from several 127.0.0.x source addresses (a source address has ~28,000 ports), with
# a sale whose waiting room holds them all. Measures, in one run:
#   - the edge's RSS with every stream open (and per stream);
#   - Redis commands per second while the line moves (INFO commandstats), against what polling
#     the same room would cost: commands per position poll measured by wrk on GET
#     /api/seckill/room in the same run, times one poll a second per shopper;
#   - the time from each ticket's turn (start + its rank / rate, as lua/room.lua computes it) to
#     its stream being told "through" (p50, p99, the last), and from the sale selling out (the
#     stock set to 0 mid-line) to each waiting stream being told "sold_out".
# The streams are held by examples/push_hold.rs (Rust, tokio). Every process here is limited by
# the machine's open-file limit (`ulimit -Hn`): PUSH_STREAMS above it is lowered to fit, and the
# run says so.
#
# Usage: loadtest/push-hold.sh   (PUSH_STREAMS=100000 PUSH_LINE_SECONDS=30)
set -euo pipefail
cd "$(dirname "$0")/.."

WANT=${PUSH_STREAMS:-100000}
LINE_S=${PUSH_LINE_SECONDS:-30}
PORT=${PUSH_PORT:-18580}
hard=$(ulimit -Hn)
ulimit -n "$hard"
N=$WANT
# the edge needs one descriptor a stream and some to spare
if [ "$hard" != unlimited ] && [ "$N" -gt $((hard - 1500)) ]; then
  N=$((hard - 1500))
  echo "== this machine allows $hard open files a process (ulimit -Hn): holding $N streams, not $WANT"
fi

./scripts/services >/dev/null
command -v wrk >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q
cargo build --release -q --example push_hold
bin=$PWD/target/release/flashgate
hold=$PWD/target/release/examples/push_hold
work=$(mktemp -d)
ns="pushhold$$:"
db="flashgate_pushhold_$$"
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db" FLASHGATE_NAMESPACE="$ns"
export FLASHGATE_METRICS_PUBLIC=on # the figures are read from the edge's /metrics
export FLASHGATE_LISTEN="127.0.0.1:$PORT" FLASHGATE_ADMIN_LISTEN=off FLASHGATE_LOG=warn
# streams may take four fifths of the connections (the rest are kept for requests), and every
# stream here comes from one address: both caps are opened to hold N
export FLASHGATE_CAPTCHA=off FLASHGATE_MAX_CONNECTIONS=$(((N + 1000) * 5 / 4 + 1))
export FLASHGATE_PUSH_MAX_CONNECTIONS=$((N + 1000)) FLASHGATE_PUSH_PER_ADDRESS=$((N + 1000))
export FLASHGATE_MAX_CONNECTIONS_PER_ADDRESS=$(((N + 1000) * 5 / 4 + 1))
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`"
  rm -rf "$work"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }
calls() { redis-cli INFO commandstats | awk -F'[:=,]' '/^cmdstat_/ {n += $3} END {print n + 0}'; }
metric() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

"$bin" migrate 2>/dev/null
"$bin" users --count "$N" --out "$work/tokens.csv" 2>/dev/null >/dev/null
"$bin" serve 2>"$work/serve.log" & pids+=($!)
edge=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
# the room: everyone joins before the start; the line is let through in LINE_S seconds
RATE=$(awk -v n="$N" -v s="$LINE_S" 'BEGIN { printf "%.0f", n / s }')
START_IN=$((N / 2000 + 25))
sale=$("$bin" sale create --starts-in "$START_IN" --lasts 3600 --json "{\"name\":\"Pushed\",\"title\":\"push-hold\",\"price\":999,\"salePrice\":1,\"stock\":$N,\"pathFactor\":2,\"roomOpensBefore\":3600,\"roomRate\":$RATE,\"userRate\":1000,\"userBurst\":1000}")
goods=$(echo "$sale" | python3 -c 'import json,sys; print(json.load(sys.stdin)["goodsId"])')
start=$(echo "$sale" | python3 -c 'import json,sys; print(json.load(sys.stdin)["startAt"])')
echo "== $N shoppers, sale $goods starting in ${START_IN}s, let through at $RATE a second"
sources=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5
"$hold" "http://127.0.0.1:$PORT" "$work/tokens.csv" "$goods" $((START_IN + LINE_S + 30)) "$sources" \
  >"$work/held" 2>"$work/hold.log" & pids+=($!)
holder=$!

# every stream open, before the start: the edge's memory
for _ in $(seq 600); do
  open=$(metric flashgate_push_connections); [ "${open:-0}" -ge "$N" ] && break; sleep 0.2
done
open=$(metric flashgate_push_connections)
rss=$(ps -o rss= -p "$edge")
echo "== $open streams open; edge RSS $((rss / 1024)) MiB"

# the line moves: Redis commands over 10 s of it
while [ "$(now_ms)" -lt $((start + 2000)) ]; do sleep 0.1; done
c0=$(calls); t0=$(now_ms)
sleep 10
c1=$(calls); t1=$(now_ms)
push_cps=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.1f", (b - a) / ((e - s) / 1000) }')
# half way through the line: the sale sells out
while [ "$(now_ms)" -lt $((start + LINE_S * 500)) ]; do sleep 0.1; done
sold_at=$(now_ms)
redis-cli SET "${ns}sk:{g:$goods}:stock" 0 >/dev/null
echo "== sold out at +$(( (sold_at - start) / 1000 ))s of the line"
wait "$holder" || true
cat "$work/hold.log"

# polling the same room instead: commands per position poll, measured on a second sale whose
# line holds the same shoppers (wrk, 5 s), times one poll a second for each shopper
poll_sale=$("$bin" sale create --starts-in 2 --lasts 3600 --json "{\"name\":\"Polled\",\"title\":\"push-hold\",\"price\":999,\"salePrice\":1,\"stock\":$N,\"pathFactor\":1,\"roomOpensBefore\":3600,\"roomRate\":0.001,\"userRate\":1000,\"userBurst\":1000}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["goodsId"])')
TOKENS="$work/tokens.csv" GOODS=$poll_sale ROOM_MODE=join wrk -t2 -c50 -d5s -s loadtest/wrk/room.lua "http://127.0.0.1:$PORT" >/dev/null
sleep 2
c0=$(calls)
polls=$(TOKENS="$work/tokens.csv" GOODS=$poll_sale ROOM_MODE=look wrk -t2 -c50 -d5s -s loadtest/wrk/room.lua "http://127.0.0.1:$PORT" | awk '/requests in/ {print $1}')
c1=$(calls)
per_poll=$(awk -v a="$c0" -v b="$c1" -v p="$polls" 'BEGIN { printf "%.2f", (b - a) / p }')
poll_cps=$(awk -v p="$per_poll" -v n="$N" 'BEGIN { printf "%.0f", p * n }')

# the latencies, from what each stream was told and when (held: user rank through_ms sold_out_ms events)
lat() { # which -> "n p50 p99 last" in seconds
  python3 - "$work/held" "$1" "$start" "$RATE" "$sold_at" <<'PY'
import math, sys
path, which, start, rate, sold_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
d = []
for line in open(path):
    f = line.split()
    if len(f) < 5:
        continue
    rank, through, sold = int(f[1]), int(f[2]), int(f[3])
    if which == "through" and rank > 0 and through > 0:
        d.append((through - (start + math.ceil(rank * 1000 / rate))) / 1000)
    if which == "sold" and sold > 0:
        d.append((sold - sold_at) / 1000)
d.sort()
if not d:
    print("0 n/a n/a n/a")
else:
    print(len(d), "%.2f" % d[len(d) // 2], "%.2f" % d[min(len(d) - 1, int(len(d) * 0.99))], "%.2f" % d[-1])
PY
}
read -r through_n through_p50 through_p99 through_max < <(lat through)
read -r so_n so_p50 so_p99 so_max < <(lat sold)
events=$(awk '{e += $5} END {print e + 0}' "$work/held")

echo
echo "push-hold — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, one edge, holder on the same box"
echo "| what | figure |"
echo "|---|---|"
echo "| streams held (wanted $WANT; open-file limit $hard) | $open |"
echo "| edge RSS with every stream open | $((rss / 1024)) MiB ($(awk -v r="$rss" -v n="$open" 'BEGIN { printf "%.1f", r / n }') KiB a stream) |"
echo "| Redis commands/s while the line moved (push) | $push_cps |"
echo "| Redis commands per position poll (polling) | $per_poll (x $N shoppers once a second = $poll_cps/s) |"
echo "| let through: turn -> stream told, p50 / p99 / last (s) | $through_p50 / $through_p99 / $through_max ($through_n streams) |"
echo "| sold out -> stream told, p50 / p99 / last (s) | $so_p50 / $so_p99 / $so_max ($so_n streams) |"
echo "| room events sent | $events |"
