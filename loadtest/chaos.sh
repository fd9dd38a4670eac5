#!/usr/bin/env bash
# A fault drill anyone can run: a sale with a separate edge and worker process; while shoppers
# buy, the worker and the edge are killed with SIGKILL and started again, MariaDB is restarted
# (when this machine runs it locally and we are root), and RabbitMQ too when the queue is
# RabbitMQ; then the queue drains and the invariants are checked and printed:
#   - orders in MySQL = units Redis handed out (initial - Redis stock)
#   - nobody has two orders
#   - MySQL stock + orders = initial
#   - lost: shoppers told 202 "queued" who have neither an order nor a "failed" result: 0
#   - every shopper told "queued" saw the outcome through /api/seckill/result within the 30 s the
#     page polls (a killed worker's entries are taken over within seconds: its heartbeat stops;
#     the claim timer, FLASHGATE_CLAIM_IDLE_MS, is left at its default of 30 s)
#   - orders out (docs/events.md) to a webhook receiver (loadtest/receiver.mjs, which checks every
#     signature) and a RabbitMQ exchange: every order has its created event, every event reached
#     both sinks, none parked; meanwhile the receiver is killed and started again
#     CHAOS_RECEIVER_DOWN seconds later (60 in the full drill, 3 in the short one) and RabbitMQ is
#     restarted (when rabbitmqctl can), besides the worker killed mid-delivery and MariaDB
# Exit status 0 only if every invariant holds.
#
# The shoppers arrive evenly over the drill and the stock is most of them, so the sale is still
# selling when each fault hits.
#
# Usage: loadtest/chaos.sh            (CHAOS_STOCK=1200 CHAOS_SHOPPERS=1500 CHAOS_SECONDS=20)
#        CHAOS_SHORT=1 loadtest/chaos.sh   (the short form CI runs: 500 units, 600 shoppers, 10 s)
#        CHAOS_QUEUE=rabbitmq ...     (through RabbitMQ, which is then restarted as well)
#        FLASHGATE_BIN=path           (default target/debug/flashgate, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh

if [ "${CHAOS_SHORT:-}" = 1 ]; then
  STOCK=${CHAOS_STOCK:-500} SHOPPERS=${CHAOS_SHOPPERS:-600} SECONDS_=${CHAOS_SECONDS:-10}
  RX_DOWN=${CHAOS_RECEIVER_DOWN:-3}
else
  STOCK=${CHAOS_STOCK:-1200} SHOPPERS=${CHAOS_SHOPPERS:-1500} SECONDS_=${CHAOS_SECONDS:-20}
  RX_DOWN=${CHAOS_RECEIVER_DOWN:-60}
fi
QUEUE=${CHAOS_QUEUE:-redis}
PORT=${CHAOS_PORT:-18380}

./scripts/services >/dev/null
bin=${FLASHGATE_BIN:-$PWD/target/debug/flashgate}
[ -x "$bin" ] || cargo build -q
work=$(mktemp -d)
id=$$
ns="chaos$id:"
db="fg_chaos_$id"
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db" FLASHGATE_NAMESPACE="$ns"
export FLASHGATE_CAPTCHA=off FLASHGATE_LISTEN="127.0.0.1:$PORT" FLASHGATE_QUEUE="$QUEUE"
export FLASHGATE_LOG=warn FLASHGATE_ADMIN_TOKEN=
export FLASHGATE_USER_RATE=20 FLASHGATE_USER_BURST=20
# orders out, to a receiver of ours and to a RabbitMQ exchange (one name for every drill, so runs
# leave at most that one exchange behind)
RX_PORT=$((PORT + 1))
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
export FLASHGATE_WEBHOOK_URL="http://127.0.0.1:$RX_PORT/hook" FLASHGATE_WEBHOOK_SECRET=$SECRET
export FLASHGATE_EVENTS_EXCHANGE=flashgate.chaos.events FLASHGATE_CURRENCY=CNY

edge_pid="" worker_pid="" rx_pid=""
say() { printf '[chaos %5.1fs] %s\n' "$(awk "BEGIN { print $(date +%s.%N) - $t0 }")" "$*"; }
start_edge() { "$bin" serve 2>>"$work/edge.log" & edge_pid=$!; }
start_worker() { "$bin" worker 2>>"$work/worker.log" & worker_pid=$!; }
start_receiver() { SECRET=$SECRET node loadtest/receiver.mjs "$RX_PORT" & rx_pid=$!; }
cleanup() {
  kill -9 "$edge_pid" "$worker_pid" "$rx_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null || true
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`" 2>/dev/null || true
  if [ "$QUEUE" = rabbitmq ] && command -v rabbitmqctl >/dev/null; then
    rabbitmqctl -q delete_queue "${ns}flashgate.orders" >/dev/null 2>&1 || true
  fi
  if [ -n "${KEEP_LOGS:-}" ]; then echo "logs: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
sql() { mariadb -uroot -h127.0.0.1 -N -B "$db" -e "$1"; }
up() { for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

t0=$(date +%s.%N)
"$bin" migrate 2>/dev/null
# a queue bound to the events exchange before the sale (publishes are mandatory: an event no
# queue takes is not delivered); the broker drops it ten minutes after the drill stops using it
"$bin" events bind "${ns}chaos.events" --expires-ms 600000 >/dev/null
goods=$("$bin" seed --stock "$STOCK" --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)
"$bin" users --count "$SHOPPERS" --out "$work/tokens.csv" 2>/dev/null >/dev/null
start_receiver; start_edge; start_worker; up
say "sale $goods: $STOCK units, $SHOPPERS shoppers, queue=$QUEUE, edge pid $edge_pid, worker pid $worker_pid"

# The shoppers (loadtest/shoppers.py): each asks for a path and buys, retrying while the edge is
# down or busy, until answered or the drill's time is up; after a 202 it polls the result for up
# to 30 s, as the page does. One line each: user kind answered seen result.
python3 loadtest/shoppers.py "$work/tokens.csv" "$PORT" "$goods" "$SECONDS_" 30 16 \
  >"$work/answers" &
shoppers=$!

# The faults, while they buy.
step=$(awk "BEGIN { print $SECONDS_ / 6 }")
stock_now() { redis-cli get "${ns}sk:{g:$goods}:stock"; }
# the shop's receiver goes away for RX_DOWN seconds, alongside the rest
say "kill -9 the webhook receiver for ${RX_DOWN} s"; kill -9 "$rx_pid"; wait "$rx_pid" 2>/dev/null || true
( sleep "$RX_DOWN"; SECRET=$SECRET exec node loadtest/receiver.mjs "$RX_PORT" ) &
rx_pid=$!
sleep "$step"; stock_at_first=$(stock_now)
say "kill -9 worker $worker_pid ($stock_at_first units left)"; kill -9 "$worker_pid"; wait "$worker_pid" 2>/dev/null || true
sleep "$step"; start_worker; say "worker started again: $worker_pid"
sleep "$step"; say "kill -9 edge $edge_pid ($(stock_now) units left)"; kill -9 "$edge_pid"; wait "$edge_pid" 2>/dev/null || true
sleep 0.5; start_edge; up && say "edge started again: $edge_pid"
sleep "$step"
stock_at_last=$(stock_now)
if [ "$(id -u)" = 0 ] && command -v mariadb-admin >/dev/null \
  && pgrep -x mariadbd >/dev/null && [ -x /usr/sbin/mariadbd ]; then
  say "restarting MariaDB ($stock_at_last units left)"
  mariadb-admin -uroot -h127.0.0.1 shutdown 2>/dev/null || true
  while pgrep -x mariadbd >/dev/null; do sleep 0.1; done
  ./scripts/services >/dev/null 2>&1
  say "MariaDB is back"
else
  say "MariaDB: not a local server we can restart here; skipped"
fi
if true; then # the queue's broker (queue=rabbitmq) and the events' exchange
  if command -v rabbitmqctl >/dev/null && rabbitmqctl -q stop_app >/dev/null 2>&1; then
    say "RabbitMQ app stopped"; sleep 1
    rabbitmqctl -q start_app >/dev/null && say "RabbitMQ app started again"
  else
    say "RabbitMQ: rabbitmqctl cannot restart it here; skipped"
  fi
fi
wait "$shoppers"
say "shoppers done: $(wc -l <"$work/answers") answered"

# Drain: every queue entry written (or given up on) by the worker.
queue="${ns}sk:{g:$goods}:queue"
for _ in $(seq 600); do
  [ "$(redis-cli xlen "$queue")" = 0 ] && break
  sleep 0.1
done
left=$(redis-cli xlen "$queue")
# through RabbitMQ the stream empties before the consumers commit: wait for MySQL to catch up
# with what Redis handed out (or give up after 30 s and let the check below say so)
for _ in $(seq 300); do
  [ "$(sql "SELECT COUNT(*) FROM seckill_order WHERE goods_id = $goods")" = \
    "$((STOCK - $(redis-cli get "${ns}sk:{g:$goods}:stock")))" ] && break
  sleep 0.1
done
say "queue drained ($left left)"
# orders out: every event delivered to both sinks (the receiver may have been down a while, and
# attempts back off up to 5 minutes apart: wait up to RX_DOWN + 120 s)
for _ in $(seq $(( (RX_DOWN + 120) * 10 ))); do
  [ "$(sql "SELECT (SELECT COUNT(*) FROM event_delivery WHERE state <> 1) + (SELECT COUNT(*) FROM event_batch WHERE state <> 1)")" = 0 ] && break
  sleep 0.1
done
say "events delivered"

# The invariants.
redis_stock=$(redis-cli get "${ns}sk:{g:$goods}:stock")
orders=$(sql "SELECT COUNT(*) FROM seckill_order WHERE goods_id = $goods")
twice=$(sql "SELECT COUNT(*) FROM (SELECT user_id FROM order_info WHERE goods_id = $goods AND status <> 2 GROUP BY user_id HAVING COUNT(*) > 1) d")
mysql_stock=$(sql "SELECT stock FROM seckill_goods WHERE goods_id = $goods")
queued=$(awk '$2 == "queued"' "$work/answers" | wc -l)
lost=0
while read -r user kind _; do
  [ "$kind" = queued ] || continue
  has=$(sql "SELECT COUNT(*) FROM seckill_order WHERE goods_id = $goods AND user_id = $user")
  result=$(redis-cli get "${ns}sk:{g:$goods}:result:$user")
  if [ "$has" = 0 ] && [ "$result" != "-1" ]; then lost=$((lost + 1)); fi
done <"$work/answers"
handed_out=$((STOCK - redis_stock))
unseen=$(awk '$2 == "queued" && $4 == 0' "$work/answers" | wc -l)
slowest=$(awk '$2 == "queued" && $4 - $3 > m {m = $4 - $3} END {printf "%.1f", m}' "$work/answers")
# the audit (flashgate audit): every unit accounted for between Redis and MySQL, unit by unit
audit_out=$("$bin" audit "$goods" 2>/dev/null) && audit_ok=1 || audit_ok=0
failures=0 passes=0
echo
echo "chaos drill: $STOCK units, $SHOPPERS shoppers, $queued told \"queued\", queue=$QUEUE"
check "the faults hit while the sale was selling" "$([ "$stock_at_last" -gt 0 ] && [ "$stock_at_first" -lt "$STOCK" ] && echo 1)" "$stock_at_first and $stock_at_last units left at the first and last fault"
check "queue drained" "$([ "$left" = 0 ] && echo 1)" "$left entries left"
check "orders = units Redis handed out" "$([ "$orders" = "$handed_out" ] && echo 1)" "$orders orders, $handed_out handed out"
check "nobody twice" "$([ "$twice" = 0 ] && echo 1)" "$twice duplicated"
check "MySQL stock + orders = initial" "$([ $((mysql_stock + orders)) = "$STOCK" ] && echo 1)" "$mysql_stock + $orders = $((mysql_stock + orders))"
check "every \"queued\" shopper has an outcome" "$([ "$lost" = 0 ] && echo 1)" "$lost lost"
check "and saw it within the page's 30 s of polling" "$([ "$unseen" = 0 ] && echo 1)" "$unseen did not; slowest ${slowest} s"
check "no oversell" "$([ "$orders" -le "$STOCK" ] && echo 1)" "$orders <= $STOCK"
check "the audit is clean" "$audit_ok" "$(echo "$audit_out" | head -n 1)"
# (a created event's record is its order row, and a batch row per sink listing the orders, or a
# delivery row of its own once its first attempt failed: docs/architecture.md)
created_sql="SELECT DISTINCT sink, o FROM (SELECT d.sink, d.order_id AS o FROM event_delivery d WHERE d.type = 0
  UNION ALL SELECT b.sink, j.o FROM event_batch b CROSS JOIN JSON_TABLE(b.orders, '\$[*]' COLUMNS(o BIGINT PATH '\$')) j) x"
no_event=$(sql "SELECT COUNT(*) FROM order_info o LEFT JOIN (SELECT c.o, COUNT(*) AS n FROM ($created_sql) c GROUP BY c.o) k ON k.o = o.id WHERE o.goods_id = $goods AND COALESCE(k.n, 0) <> 2")
created=$(sql "SELECT COUNT(DISTINCT o) FROM ($created_sql) c")
all_orders=$(sql "SELECT COUNT(*) FROM order_info WHERE goods_id = $goods")
check "every order has one created event" "$([ "$no_event" = 0 ] && [ "$created" = "$all_orders" ] && echo 1)" "$created created events, $all_orders orders, $no_event without"
undelivered=$(sql "SELECT (SELECT COUNT(*) FROM event_delivery WHERE state = 0) + (SELECT COUNT(*) FROM event_batch WHERE state = 0)")
parked=$(sql "SELECT COUNT(*) FROM event_delivery WHERE state = 2")
sinks=$(sql "SELECT COUNT(DISTINCT sink) FROM (SELECT sink FROM event_delivery UNION SELECT sink FROM event_batch) s")
check "every event reached both sinks, none parked" "$([ "$undelivered" = 0 ] && [ "$parked" = 0 ] && [ "$sinks" = 2 ] && echo 1)" "$undelivered undelivered, $parked parked, $sinks sinks"
stats=$(curl -fsS "http://127.0.0.1:$RX_PORT/stats" || echo '{}')
check "the receiver found every signature good" "$(grep -q '"badSignatures":0' <<<"$stats" && echo 1)" "since its restart: $stats"
echo "lost: $lost, duplicated: $twice"
echo "chaos: $passes passed, $failures failed"
[ "$failures" = 0 ]
