#!/usr/bin/env bash
# Orders out (docs/events.md) under load: the worker's batched order writing with events off,
# with the outbox only, with a webhook sink and with a RabbitMQ sink (the relay giving way to
# order writing, the default, and never giving way: `-now`), in the same interleaved rounds; how
# fast the relay delivers to a local webhook receiver (loadtest/receiver.mjs, which checks every
# signature) and to RabbitMQ (publisher confirms); and each process's CPU per order.
#
# Each round, for each mode in turn (each round starting one mode further on): a fresh sale of
# EVENTS_ORDERS units whose every shopper already holds a path; one edge admits them all (every
# shopper buys once: wrk/buy.lua's ONCE); MariaDB left to finish flushing; then a fresh
# `flashgate worker` with the mode's settings drains the queue into MariaDB (and, with a sink,
# writes the created events in the same transactions). Worker orders/s is taken from MySQL's own
# clock, first to last order commit. With a sink the worker keeps running until the sink has
# every event; the relay's events/s is first to last recorded delivery (`done_at` of the batches
# and delivery rows, less the first pass recorded), and "last event after last order" how long
# after the last order's commit its event was delivered. FLASHGATE_WEBHOOK_RATE is set out of the
# way (1,000,000) and FLASHGATE_WEBHOOK_IN_FLIGHT to EVENTS_IN_FLIGHT (64). The RabbitMQ modes
# publish to an exchange (flashgate.bench.PID) with a queue bound to it first (`flashgate events
# bind`, dropped by the broker ten minutes after the run): events are published mandatory, and
# one no queue takes is not delivered (docs/events.md); the figures in loadtest/README §14 were
# measured before that, with no queue bound. CPU per
# order: the worker process (with its relays), MariaDB, the broker and the receiver, from
# /proc/PID/stat over the run.
# Ends by checking every order has exactly one created event per sink and none is parked.
#
# The outbox mode writes the events with a webhook sink that refuses connections (the relay backs
# off): the outbox's own cost to the worker, apart from the relay's work beside it.
#
# Usage: loadtest/events-bench.sh   (EVENTS_ROUNDS=3 EVENTS_ORDERS=50000 EVENTS_IN_FLIGHT=64
#        EVENTS_MODES="off outbox webhook rabbit webhook-now rabbit-now")
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
FLASHGATE_EVENTS_EXCHANGE="$exchange" "$bin" events bind "$exchange.queue" --expires-ms 600000 >/dev/null
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
  until_bought "$ns" "$g" "$N" "$w"
  kill -INT "$w" 2>/dev/null || true; wait "$w" 2>/dev/null || true
  echo "$g"
}
my=$(pidof mariadbd || pidof mysqld) broker=$(pgrep -f beam.smp | head -n 1)
# created events written since T that a sink took: on the first attempt of their batch, or later
# from their own delivery row (docs/architecture.md)
delivered() {
  sql "SELECT (SELECT COALESCE(SUM(delivered), 0) FROM event_batch WHERE created_at >= '$1')
    + (SELECT COUNT(*) FROM event_delivery WHERE created_at >= '$1' AND state = 1)"
}
# (sink, order) of every created event written: from the batches and the delivery rows
created_sql="SELECT b.sink, j.o FROM event_batch b CROSS JOIN JSON_TABLE(b.orders, '\$[*]' COLUMNS(o BIGINT PATH '\$')) j"
settle() { # waits (15 s at most) until MariaDB is quiet: under 5% of a core for half a second
  # (it flushes the last run's pages in the background, which would slow the next run)
  local a b
  for _ in $(seq 30); do
    a=$(cpu "$my"); sleep 0.5; b=$(cpu "$my")
    [ $(( (b - a) * 100 * 2 / tck )) -lt 5 ] && return
  done
}
drain() { # mode goods -> "orders orders/s events events/s worker-µs mysql-µs broker-µs receiver-µs" (CPU per order)
  local mode=$1 g=$2 env=() w orders span ev evspan want c0 c1 wc t0 lag
  want=$(redis-cli SCARD "${ns}sk:{g:$g}:buyers")
  case $mode in
    webhook*) env=(FLASHGATE_CURRENCY=CNY FLASHGATE_WEBHOOK_URL="http://127.0.0.1:$RX_PORT/hook" FLASHGATE_WEBHOOK_SECRET=$SECRET
                  FLASHGATE_WEBHOOK_RATE=1000000 FLASHGATE_WEBHOOK_IN_FLIGHT=${EVENTS_IN_FLIGHT:-64}) ;;
    rabbit*) env=(FLASHGATE_CURRENCY=CNY FLASHGATE_EVENTS_EXCHANGE="$exchange") ;;
    # the events written, none sent yet (an endpoint that refuses connections: the relay backs
    # off): the outbox's own cost to the worker, without a relay working beside it
    outbox) env=(FLASHGATE_CURRENCY=CNY FLASHGATE_WEBHOOK_URL="http://127.0.0.1:9/closed" FLASHGATE_WEBHOOK_SECRET=$SECRET) ;;
  esac
  settle
  t0=$(sql "SELECT NOW(3)")
  c0="$(cpu "$my") $(cpu "$broker") $(cpu "$rx")"
  # (-now: the relay never gives way to order writing, it delivers beside it)
  [[ $mode = *-now ]] && env+=(FLASHGATE_EVENTS_GIVE_WAY_MS=0)
  env "${env[@]}" "$bin" worker 2>>"$work/worker.log" &
  w=$!
  while [ "$(sql "SELECT COUNT(*) FROM order_info WHERE goods_id = $g")" -lt "$want" ]; do sleep 0.2; done
  if [[ $mode = webhook* || $mode = rabbit* ]]; then
    until [ "$(delivered "$t0")" -ge "$want" ]; do sleep 0.2; done
  fi
  wc=$(cpu "$w") c1="$(cpu "$my") $(cpu "$broker") $(cpu "$rx")"
  kill "$w"; wait "$w" 2>/dev/null || true
  orders=$(sql "SELECT COUNT(*) FROM order_info WHERE goods_id = $g")
  span=$(sql "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(created_at), MAX(created_at)) / 1e6 FROM order_info WHERE goods_id = $g")
  lag=0
  if [ "$mode" = off ] || [ "$mode" = outbox ]; then ev=0; evspan=0; else
    # first to last recorded delivery; a pass records its events when they are all sent, so the
    # events of the first pass recorded are not counted (they were sent before the span begins)
    read -r ev evspan <<<"$(sql "SELECT SUM(n) - SUBSTRING_INDEX(GROUP_CONCAT(n ORDER BY t), ',', 1),
      TIMESTAMPDIFF(MICROSECOND, MIN(t), MAX(t)) / 1e6 FROM (
        SELECT done_at AS t, delivered AS n FROM event_batch WHERE created_at >= '$t0' AND state = 1
        UNION ALL SELECT done_at, 1 FROM event_delivery WHERE created_at >= '$t0' AND state = 1) x")"
    # how long after the last order's commit its event was delivered
    lag=$(sql "SELECT TIMESTAMPDIFF(MICROSECOND, (SELECT MAX(created_at) FROM order_info WHERE goods_id = $g),
      GREATEST((SELECT MAX(done_at) FROM event_batch WHERE created_at >= '$t0'),
               COALESCE((SELECT MAX(done_at) FROM event_delivery WHERE created_at >= '$t0'), 0))) / 1e6")
  fi
  awk -v o="$orders" -v s="$span" -v e="$ev" -v es="$evspan" -v wc="$wc" -v c0="$c0" -v c1="$c1" -v t="$tck" -v lag="$lag" '
    BEGIN {split(c0, a, " "); split(c1, b, " "); u = 1e6 / t / o
      printf "%d %.0f %d %.0f %.1f %.1f %.1f %.1f %.2f\n", o, o / s, e, (es > 0 ? e / es : 0),
        wc * u, (b[1] - a[1]) * u, (b[2] - a[2]) * u, (b[3] - a[3]) * u, lag}'
}
modes=(${EVENTS_MODES:-off outbox webhook rabbit webhook-now rabbit-now})
declare -A R
sales=() with_sink=()
for round in $(seq "$ROUNDS"); do
  # each round starts one mode further on, so that no mode always runs on the freshest tables
  # (every run adds EVENTS_ORDERS orders) or right after the same other mode
  for k in "${!modes[@]}"; do
    mode=${modes[$(( (k + round - 1) % ${#modes[@]} ))]}
    g=$(admit); sales+=("$g")
    [ "$mode" = off ] || with_sink+=("$g")
    line=$(drain "$mode" "$g")
    echo "round $round $mode: orders orders/s events events/s = $line"
    R[$mode]+="$line"$'\n'
  done
done
col() { awk -v c="$2" 'NF {print $c}' <<<"$1" | paste -sd/; }
med() { median $(tr / ' ' <<<"$1"); }
echo
echo "orders out, $ROUNDS rounds interleaved, $N orders a run, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "| events | worker orders/s (first→last commit) | vs off | relay events/s (first→last delivery) | last event after last order, s | CPU µs per order: worker process | MariaDB | RabbitMQ | receiver |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for mode in "${modes[@]}"; do
  o=$(col "${R[$mode]}" 2)
  ratio=$(paste -d' ' <(tr / '\n' <<<"$o") <(col "${R[off]}" 2 | tr / '\n') | awk '{printf "%.2f\n", $1 / $2}' | paste -sd/)
  e=$(col "${R[$mode]}" 4)
  echo "| $mode | $(med "$o") [$o] | $(med "$ratio") [$ratio] | $([ "$mode" = off ] || [ "$mode" = outbox ] && echo — || echo "$(med "$e") [$e]") | $(med "$(col "${R[$mode]}" 9)") [$(col "${R[$mode]}" 9)] | $(med "$(col "${R[$mode]}" 5)") | $(med "$(col "${R[$mode]}" 6)") | $(med "$(col "${R[$mode]}" 7)") | $(med "$(col "${R[$mode]}" 8)") |"
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
dupes=$(sql "SELECT COUNT(*) FROM ($created_sql) c GROUP BY c.sink, c.o HAVING COUNT(*) > 1" | wc -l)
# the runs with a sink: every order has its created event
evented=$(IFS=,; echo "${with_sink[*]}")
without=$(sql "SELECT COUNT(*) FROM order_info o LEFT JOIN (SELECT DISTINCT c.o FROM ($created_sql UNION ALL SELECT sink, order_id FROM event_delivery WHERE type = 0) c) k ON k.o = o.id WHERE o.goods_id IN ($evented) AND k.o IS NULL")
echo "invariants: orders = admitted in every sale; parked $parked; orders with two created events $dupes; orders of the runs with a sink without one $without"
[ "$parked" = 0 ] && [ "$dupes" = 0 ] && [ "$without" = 0 ] && [ "$bad" = 0 ]
