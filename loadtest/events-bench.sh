#!/usr/bin/env bash
# Orders out (docs/events.md) under load: the worker's batched order writing with events off,
# with a webhook sink, and with a RabbitMQ sink, in the same interleaved rounds; and how fast the
# relay delivers to a local webhook receiver (loadtest/receiver.mjs, which checks every
# signature) and to RabbitMQ (publisher confirms).
#
# Each round, for each mode in turn: a fresh sale of EVENTS_ORDERS units whose every shopper
# already holds a path; one edge admits them all (every shopper buys once: wrk/buy.lua's ONCE);
# then a fresh `flashgate worker` with the mode's settings drains the queue into MariaDB (and,
# with a sink, writes every order's created event in the same transaction). Worker orders/s is
# taken from MySQL's own clock, first to last order commit. With a sink the worker keeps
# running until the sink has every event; the relay's events/s is first to last recorded
# delivery (`event_delivery.done_at`). FLASHGATE_WEBHOOK_RATE is set out of the way (1,000,000)
# and FLASHGATE_WEBHOOK_IN_FLIGHT to EVENTS_IN_FLIGHT (64). The RabbitMQ exchange has no queue
# bound (the broker routes the events nowhere; each is still confirmed).
# Ends by checking every order has exactly one created event and none is parked.
#
# A fourth mode, outbox, writes the events with a webhook sink that refuses connections (the relay
# backs off): the outbox's own cost to the worker, apart from the relay's work beside it.
#
# Usage: loadtest/events-bench.sh   (EVENTS_ROUNDS=3 EVENTS_ORDERS=50000 EVENTS_IN_FLIGHT=64)
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh
need_wrk
ROUNDS=${EVENTS_ROUNDS:-3}
N=${EVENTS_ORDERS:-50000}
PORT=${EVENTS_PORT:-18780}
RX_PORT=$((PORT + 1))
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
./scripts/services >/dev/null
cargo build --release -q
bin="$PWD/target/release/flashgate"
work=$(mktemp -d)
ns="evbench$$:"
db="flashgate_evbench_$$"
exchange="flashgate.bench.$$"
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db" FLASHGATE_NAMESPACE="$ns"
export FLASHGATE_CAPTCHA=off FLASHGATE_LOG=warn FLASHGATE_ADMIN_LISTEN=off FLASHGATE_PATH_FACTOR=1
export FLASHGATE_GATE_RATE=1000000000 FLASHGATE_GATE_BURST=1000000000
edge="" rx=""
cleanup() {
  [ -n "$edge" ] && kill "$edge" 2>/dev/null || true
  [ -n "$rx" ] && kill "$rx" 2>/dev/null || true
  pkill -f "flashgate worker" -P $$ 2>/dev/null || true
  wait 2>/dev/null || true
  redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`"
  rm -rf "$work"
}
trap cleanup EXIT
sql() { mariadb -uroot -h127.0.0.1 -N -B "$db" -e "$1"; }
P=0123456789abcdef0123456789abcdef
"$bin" migrate 2>/dev/null
"$bin" users --count "$N" --out "$work/tokens.csv" 2>/dev/null >/dev/null
SECRET=$SECRET node loadtest/receiver.mjs "$RX_PORT" &
rx=$!
FLASHGATE_LISTEN="127.0.0.1:$PORT" "$bin" serve 2>>"$work/serve.log" &
edge=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
admit() { # a fresh sale, every shopper admitted once -> goods id
  local g w
  g=$("$bin" seed --stock "$N" --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)
  loadtest/seed-paths.py "$work/tokens.csv" "$ns" "$P" "$g" | redis-cli --pipe >/dev/null
  ONCE=1 TOKENS="$work/tokens.csv" GOODS=$g HIDDEN_PATH=$P wrk -t2 -c50 -d120s -s loadtest/wrk/buy.lua \
    "http://127.0.0.1:$PORT" >/dev/null &
  w=$!
  local seen=-1 now still=0
  while kill -0 "$w" 2>/dev/null; do
    now=$(redis-cli SCARD "${ns}sk:{g:$g}:buyers")
    [ "$now" -ge "$N" ] && break
    # (wrk may drop a request or two when it stops: stop once nothing moves for half a second)
    if [ "$now" = "$seen" ]; then still=$((still + 1)); [ "$still" -ge 10 ] && break; else still=0; fi
    seen=$now
    sleep 0.05
  done
  kill -INT "$w" 2>/dev/null || true; wait "$w" 2>/dev/null || true
  echo "$g"
}
drain() { # mode goods -> "orders orders/s events events/s"
  local mode=$1 g=$2 env=() w orders span ev evspan want
  want=$(redis-cli SCARD "${ns}sk:{g:$g}:buyers")
  case $mode in
    webhook) env=(FLASHGATE_WEBHOOK_URL="http://127.0.0.1:$RX_PORT/hook" FLASHGATE_WEBHOOK_SECRET=$SECRET
                  FLASHGATE_WEBHOOK_RATE=1000000 FLASHGATE_WEBHOOK_IN_FLIGHT=${EVENTS_IN_FLIGHT:-64}) ;;
    rabbit) env=(FLASHGATE_EVENTS_EXCHANGE="$exchange") ;;
    # the events written, none sent yet (an endpoint that refuses connections: the relay backs
    # off): the outbox's own cost to the worker, without a relay working beside it
    outbox) env=(FLASHGATE_WEBHOOK_URL="http://127.0.0.1:9/closed" FLASHGATE_WEBHOOK_SECRET=$SECRET) ;;
  esac
  env "${env[@]}" "$bin" worker 2>>"$work/worker.log" &
  w=$!
  while [ "$(sql "SELECT COUNT(*) FROM order_info WHERE goods_id = $g")" -lt "$want" ]; do sleep 0.2; done
  if [ "$mode" = webhook ] || [ "$mode" = rabbit ]; then
    until [ "$(sql "SELECT COUNT(*) FROM event_delivery d JOIN order_info o ON o.id = d.order_id WHERE o.goods_id = $g AND d.state = 1")" -ge "$want" ]; do sleep 0.2; done
  fi
  kill "$w"; wait "$w" 2>/dev/null || true
  orders=$(sql "SELECT COUNT(*) FROM order_info WHERE goods_id = $g")
  span=$(sql "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(created_at), MAX(created_at)) / 1e6 FROM order_info WHERE goods_id = $g")
  if [ "$mode" = off ] || [ "$mode" = outbox ]; then ev=0; evspan=0; else
    ev=$(sql "SELECT COUNT(*) FROM event_delivery d JOIN order_info o ON o.id = d.order_id WHERE o.goods_id = $g AND d.state = 1")
    evspan=$(sql "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(d.done_at), MAX(d.done_at)) / 1e6 FROM event_delivery d JOIN order_info o ON o.id = d.order_id WHERE o.goods_id = $g")
  fi
  awk -v o="$orders" -v s="$span" -v e="$ev" -v es="$evspan" 'BEGIN {printf "%d %.0f %d %.0f\n", o, o / s, e, (es > 0 ? e / es : 0)}'
}
modes=(off outbox webhook rabbit)
declare -A R
sales=()
for round in $(seq "$ROUNDS"); do
  for mode in "${modes[@]}"; do
    g=$(admit); sales+=("$g")
    line=$(drain "$mode" "$g")
    echo "round $round $mode: orders orders/s events events/s = $line"
    R[$mode]+="$line"$'\n'
  done
done
col() { awk -v c="$2" 'NF {print $c}' <<<"$1" | paste -sd/; }
med() { median $(tr / ' ' <<<"$1"); }
echo
echo "orders out, $ROUNDS rounds interleaved, $N orders a run, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "| events | worker orders/s (first→last commit) | vs off | relay events/s (first→last delivery) |"
echo "|---|---:|---:|---:|"
for mode in "${modes[@]}"; do
  o=$(col "${R[$mode]}" 2)
  ratio=$(paste -d' ' <(tr / '\n' <<<"$o") <(col "${R[off]}" 2 | tr / '\n') | awk '{printf "%.2f\n", $1 / $2}' | paste -sd/)
  e=$(col "${R[$mode]}" 4)
  echo "| $mode | $(med "$o") [$o] | $(med "$ratio") [$ratio] | $([ "$mode" = off ] || [ "$mode" = outbox ] && echo — || echo "$(med "$e") [$e]") |"
done
echo "receiver: $(curl -fsS "http://127.0.0.1:$RX_PORT/stats")"
bad=0
for g in "${sales[@]}"; do
  c=$(sql "SELECT COUNT(*) FROM order_info WHERE goods_id = $g")
  a=$(redis-cli SCARD "${ns}sk:{g:$g}:buyers")
  [ "$c" = "$a" ] || { echo "sale $g: $c orders of $a admitted" >&2; bad=1; }
done
parked=$(sql "SELECT COUNT(*) FROM event_delivery WHERE state = 2")
# (the outbox runs' events were never sent: their endpoint refused every connection)
dupes=$(sql "SELECT COUNT(*) FROM (SELECT order_id FROM event_delivery WHERE type = 0 GROUP BY order_id HAVING COUNT(*) > 1) x")
# the runs with a sink: every order has its created event
evented=$(for i in "${!sales[@]}"; do [ $((i % 4)) != 0 ] && echo "${sales[$i]}"; done | paste -sd,)
without=$(sql "SELECT COUNT(*) FROM order_info o WHERE o.goods_id IN ($evented) AND NOT EXISTS (SELECT 1 FROM event_delivery d WHERE d.order_id = o.id AND d.type = 0)")
echo "invariants: orders = admitted in every sale; parked $parked; orders with two created events $dupes; orders of the runs with a sink without one $without"
[ "$parked" = 0 ] && [ "$dupes" = 0 ] && [ "$without" = 0 ] && [ "$bad" = 0 ]
