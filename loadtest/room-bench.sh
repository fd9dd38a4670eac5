#!/usr/bin/env bash
# The waiting room's throughput, against the edge's own ceiling in the same run: wrk on
#   1. /healthz (hyper + the router: the most any route can do here),
#   2. joins: POST /api/seckill/room for a sale whose room is open before its start (a session
#      read and one room.lua call: ZSCORE, ZADD for a new ticket, ZCARD),
#   3. position polls: GET /api/seckill/room for a started sale with every shopper in line (a
#      session read and one room.lua call: ZSCORE, ZCARD, ZRANK),
# each BENCH_ROUNDS times, interleaved, quoted as medians with the ratio to /healthz.
# Usage: loadtest/room-bench.sh   (BENCH_DURATION=10 BENCH_CONNECTIONS=50 BENCH_USERS=100000 BENCH_ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-50}
USERS=${BENCH_USERS:-100000}
PORT=${BENCH_PORT:-18280}
ROUNDS=${BENCH_ROUNDS:-3}

./scripts/services >/dev/null
command -v wrk >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; }
command -v wrk >/dev/null || { echo "room-bench needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q
bin=$PWD/target/release/flashgate
work=$(mktemp -d)
ns="roombench$$:"
db="flashgate_roombench_$$"
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db" FLASHGATE_NAMESPACE="$ns"
export FLASHGATE_LISTEN="127.0.0.1:$PORT" FLASHGATE_ADMIN_LISTEN=off FLASHGATE_LOG=warn
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true
  redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`"
  rm -rf "$work"
}
trap cleanup EXIT

echo "== preparing: $USERS shoppers, a room before its start, a room with everyone in line"
"$bin" migrate 2>/dev/null
"$bin" users --count "$USERS" --out "$work/tokens.csv" 2>/dev/null >/dev/null
sale() { # starts-in, then the JSON's extra fields; prints the goods id
  "$bin" sale create --starts-in "$1" --lasts 7200 --json "{\"name\": \"Room bench\", \"title\": \"Room bench\",
    \"price\": 2, \"salePrice\": 1, \"stock\": 1000000, \"pathFactor\": 1, \"roomOpensBefore\": 86400, $2}" \
    2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["goodsId"])'
}
before=$(sale 3600 '"roomRate": 1000')
line=$(sale 15 '"roomRate": 1')
# everyone in the second room before its start (its tickets drawn here, as the edge would)
tail -n +2 "$work/tokens.csv" | awk -F, -v k="${ns}sk:{g:$line}:room:line" 'BEGIN { srand() }
  { s = sprintf("%.0f", rand() * 4503599627370495)
    printf "*4\r\n$4\r\nZADD\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(s), s, length($1), $1 }' \
  | redis-cli --pipe >/dev/null
"$bin" serve 2>"$work/serve.log" & pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
start_ms=$(redis-cli hget "${ns}sk:{g:$line}:meta" start_ms)
while [ "$(($(date +%s%3N)))" -lt "$start_ms" ]; do sleep 0.2; done

run() { # label, then wrk arguments; prints "rps p50ms p99ms"
  local out label=$1
  shift
  out=$(wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "$@")
  echo "$out" >"$work/wrk-$label.txt"
  echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')") $(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")"
}
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/ && v !~ /ms$/) n *= 1000; printf "%.2f", n }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
H=() J=() L=() H99=() J99=() L99=() H50=() J50=() L50=()
for round in $(seq "$ROUNDS"); do
  echo "== round $round/$ROUNDS: /healthz, joins, polls"
  read -r a b c < <(run healthz "http://127.0.0.1:$PORT/healthz"); H+=("$a") H50+=("$b") H99+=("$c")
  read -r a b c < <(TOKENS="$work/tokens.csv" GOODS=$before ROOM_MODE=join run join -s loadtest/wrk/room.lua "http://127.0.0.1:$PORT")
  J+=("$a") J50+=("$b") J99+=("$c")
  read -r a b c < <(TOKENS="$work/tokens.csv" GOODS=$line ROOM_MODE=look run look -s loadtest/wrk/room.lua "http://127.0.0.1:$PORT")
  L+=("$a") L50+=("$b") L99+=("$c")
done
# what the polls were answered: a sample, to show they were real positions
sample=$(curl -fsS -H "Authorization: Bearer $(sed -n 2p "$work/tokens.csv" | cut -d, -f2)" \
  "http://127.0.0.1:$PORT/api/seckill/room?goodsId=$line")
non2xx=$(cat "$work"/wrk-join.txt "$work"/wrk-look.txt | awk '/Non-2xx/ {s += $NF} END {print s + 0}')
h=$(median "${H[@]}") j=$(median "${J[@]}") l=$(median "${L[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
echo
echo "room-bench $(date -u +%Y-%m-%dT%H:%MZ): $USERS shoppers, $CONNS connections, ${DUR}s per run, $ROUNDS rounds; medians [per round]"
echo "| run | req/s | vs /healthz | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
echo "| /healthz | $h [$(IFS=/; echo "${H[*]}")] | 1.00x | $(median "${H50[@]}") | $(median "${H99[@]}") |"
echo "| join (POST /api/seckill/room) | $j [$(IFS=/; echo "${J[*]}")] | $(ratio "$j" "$h") | $(median "${J50[@]}") | $(median "${J99[@]}") |"
echo "| position poll (GET /api/seckill/room) | $l [$(IFS=/; echo "${L[*]}")] | $(ratio "$l" "$h") | $(median "${L50[@]}") | $(median "${L99[@]}") |"
echo "non-2xx answers in the join and poll runs: $non2xx; room size after the joins: $(redis-cli zcard "${ns}sk:{g:$before}:room:line"); a poll: $sample"
