#!/usr/bin/env bash
# The failover drill: a Redis primary killed with SIGKILL in the middle of a sale, on loopback.
#   sentinel: one primary, one replica, three sentinels (scripts/sentinel, ports 7301-7313)
#   cluster:  three primaries with a replica each (scripts/cluster, ports 7321-7326)
# The edge and the worker run as processes of their own against the set
# (FLASHGATE_REDIS_URL=redis+sentinel://… or redis+cluster://…), with replica confirmation at
# its default (1 replica). Shoppers ask for a path and buy, trying again on an error every
# 200 ms as the page does; one told "queued" (202, code 0) or "being confirmed" (202, code
# 500509) polls /api/seckill/result as the page does. Mid-sale the primary holding the sale is
# killed; once a replica has taken over and answers, the dead node is started again (it rejoins
# as a replica). Then the queue drains and the drill prints the invariants and a pass/fail line:
#   - every shopper told "queued" has an order and saw it through /api/seckill/result within
#     10 s of the new primary answering (or of their 202, if later)
#   - every shopper told "being confirmed" learnt the outcome (an order or "no")
#   - nobody twice; no oversell; orders = units Redis handed out; MySQL stock + orders = initial
#   - the audit clean after recovery; the sale sold out after the failover (it went on selling)
# It kills and restarts only the redis-server processes it started itself.
#
# Usage: loadtest/failover.sh                 both modes (3,000 units, 6,000 shoppers, 24 s each)
#        FAILOVER_MODE=sentinel|cluster ...   one of them
#        FAILOVER_SHORT=1 ...                 the short form ./scripts/test runs (600, 1,200, 16 s)
#        FLASHGATE_BIN=path                   (default target/debug/flashgate, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
source loadtest/lib.sh

if [ "${FAILOVER_SHORT:-}" = 1 ]; then
  STOCK=${FAILOVER_STOCK:-600} SHOPPERS=${FAILOVER_SHOPPERS:-1200} SECONDS_=${FAILOVER_SECONDS:-16}
else
  STOCK=${FAILOVER_STOCK:-3000} SHOPPERS=${FAILOVER_SHOPPERS:-6000} SECONDS_=${FAILOVER_SECONDS:-24}
fi
MODES=${FAILOVER_MODE:-sentinel cluster}
PORT=${FAILOVER_PORT:-18390}
SENTINEL_PORTS="7301 7302 7311 7312 7313"
CLUSTER_PORTS="7321 7322 7323 7324 7325 7326"

./scripts/services >/dev/null
bin=${FLASHGATE_BIN:-$PWD/target/debug/flashgate}
[ -x "$bin" ] || cargo build -q
overall=0

drill() { # mode
  local mode=$1
  local work id ns db edge_pid="" worker_pid="" url
  work=$(mktemp -d)
  id="$$$RANDOM"
  ns="failover$id:"
  db="fg_failover_$id"
  say() { printf '[failover %s %5.1fs] %s\n' "$mode" "$(awk "BEGIN { print $(date +%s.%N) - $t0 }")" "$*"; }
  if [ "$mode" = sentinel ]; then
    url=$(FLASHGATE_SENTINEL_PORTS="$SENTINEL_PORTS" ./scripts/sentinel 2>/dev/null)
  else
    url=$(FLASHGATE_CLUSTER_PORTS="$CLUSTER_PORTS" FLASHGATE_CLUSTER_REPLICAS=1 \
      FLASHGATE_CLUSTER_NODE_TIMEOUT=1000 ./scripts/cluster 2>/dev/null)
  fi
  export FLASHGATE_REDIS_URL="$url" FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db"
  export FLASHGATE_NAMESPACE="$ns" FLASHGATE_CAPTCHA=off FLASHGATE_LISTEN="127.0.0.1:$PORT"
  export FLASHGATE_LOG=warn FLASHGATE_ADMIN_TOKEN= FLASHGATE_USER_RATE=20 FLASHGATE_USER_BURST=20
  cleanup_drill() {
    kill -9 "$edge_pid" "$worker_pid" 2>/dev/null || true
    wait "$edge_pid" "$worker_pid" 2>/dev/null || true
    mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`" 2>/dev/null || true
    if [ "$mode" = sentinel ]; then
      FLASHGATE_SENTINEL_PORTS="$SENTINEL_PORTS" ./scripts/sentinel stop 2>/dev/null
    else
      FLASHGATE_CLUSTER_PORTS="$CLUSTER_PORTS" ./scripts/cluster stop 2>/dev/null
    fi
    if [ -n "${KEEP_LOGS:-}" ]; then echo "logs: $work"; else rm -rf "$work"; fi
  }
  trap cleanup_drill RETURN
  # redis-cli on the node that holds the sale now
  rcli() {
    if [ "$mode" = sentinel ]; then
      local p; p=$(FLASHGATE_SENTINEL_PORTS="$SENTINEL_PORTS" ./scripts/sentinel primary)
      redis-cli -h "${p%:*}" -p "${p#*:}" "$@"
    else
      redis-cli -c -p "$(alive_cluster_port)" "$@"
    fi
  }
  alive_cluster_port() { for p in $CLUSTER_PORTS; do redis-cli -p "$p" ping >/dev/null 2>&1 && { echo "$p"; return; }; done; }
  # the port of the primary serving the sale's slot
  owner() {
    if [ "$mode" = sentinel ]; then
      FLASHGATE_SENTINEL_PORTS="$SENTINEL_PORTS" ./scripts/sentinel primary | cut -d: -f2
    else
      local slot; slot=$(redis-cli -p "$(alive_cluster_port)" cluster keyslot "{g:$goods}")
      redis-cli -p "$(alive_cluster_port)" cluster slots | awk -v s="$slot" '
        NR % 1 == 0 { line[NR] = $0 } END {
          for (i = 1; i <= NR; i++) if (line[i] ~ /^[0-9]+$/ && line[i+1] ~ /^[0-9]+$/ && line[i+2] == "127.0.0.1") {
            if (line[i] + 0 <= s && s <= line[i+1] + 0) { print line[i+3]; exit } } }'
    fi
  }
  sql() { mariadb -uroot -h127.0.0.1 -N -B "$db" -e "$1"; }
  up() { for _ in $(seq 200); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

  t0=$(date +%s.%N)
  "$bin" migrate 2>/dev/null
  goods=$("$bin" seed --stock "$STOCK" --starts-in 0 --lasts 3600 2>/dev/null | tail -n 1)
  "$bin" users --count "$SHOPPERS" --out "$work/tokens.csv" 2>/dev/null >/dev/null
  "$bin" serve 2>>"$work/edge.log" & edge_pid=$!
  FLASHGATE_WORKER_LISTEN="127.0.0.1:$((PORT + 1))" "$bin" worker 2>>"$work/worker.log" & worker_pid=$!
  up
  say "sale $goods: $STOCK units, $SHOPPERS shoppers, $url, edge $edge_pid, worker $worker_pid"
  say "replica confirmation: $(curl -fsS --retry 5 --retry-connrefused "http://127.0.0.1:$((PORT + 1))/readyz" | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(d["replicasRequired"], "-", d["replicaConfirmation"])')"

  # The shoppers (loadtest/shoppers.py): one line each: user kind answered seen result
  python3 loadtest/shoppers.py "$work/tokens.csv" "$PORT" "$goods" "$SECONDS_" 60 \
    >"$work/answers" &
  local shoppers=$!

  # The fault: the sale's primary, mid-sale.
  sleep "$(awk "BEGIN { print $SECONDS_ / 4 }")"
  local victim stock_at_kill t_kill t_new new
  victim=$(owner)
  stock_at_kill=$(rcli get "${ns}sk:{g:$goods}:stock")
  local dir="${TMPDIR:-/tmp}/flashgate-$([ "$mode" = sentinel ] && echo "sentinel-7301" || echo "cluster-7321")/$victim"
  t_kill=$(date +%s.%N)
  kill -9 "$(cat "$dir/redis.pid")"
  say "kill -9 of the primary 127.0.0.1:$victim ($stock_at_kill units left)"
  # until a replica has taken over and answers
  for _ in $(seq 300); do
    new=$(owner 2>/dev/null || true)
    if [ -n "$new" ] && [ "$new" != "$victim" ] && redis-cli -p "$new" ping >/dev/null 2>&1 \
      && [ "$(redis-cli -p "$new" role | head -n 1)" = master ]; then break; fi
    sleep 0.1
  done
  t_new=$(date +%s.%N)
  say "new primary 127.0.0.1:$new answers, $(awk "BEGIN { printf \"%.1f\", $t_new - $t_kill }") s after the kill"
  if [ "$mode" = sentinel ]; then
    FLASHGATE_SENTINEL_PORTS="$SENTINEL_PORTS" ./scripts/sentinel node "$victim" 2>/dev/null
  else
    FLASHGATE_CLUSTER_PORTS="$CLUSTER_PORTS" FLASHGATE_CLUSTER_NODE_TIMEOUT=1000 ./scripts/cluster node "$victim" 2>/dev/null
  fi
  say "the old primary started again (it rejoins as a replica)"
  wait "$shoppers"
  say "shoppers done: $(wc -l <"$work/answers") answered"

  # Drain, then give the worker's audit a few passes to mend what the failover left.
  local queue="${ns}sk:{g:$goods}:queue" left
  for _ in $(seq 600); do
    [ "$(rcli xlen "$queue")" = 0 ] && break
    sleep 0.1
  done
  left=$(rcli xlen "$queue")
  local audit_out audit_ok=0
  for _ in $(seq 30); do
    if audit_out=$("$bin" audit "$goods" 2>/dev/null); then audit_ok=1; break; fi
    sleep 1
  done
  say "queue drained ($left left), audit $([ "$audit_ok" = 1 ] && echo clean || echo "not clean")"

  local redis_stock orders twice mysql_stock handed_out
  redis_stock=$(rcli get "${ns}sk:{g:$goods}:stock")
  orders=$(sql "SELECT COUNT(*) FROM seckill_order WHERE goods_id = $goods")
  twice=$(sql "SELECT COUNT(*) FROM (SELECT user_id FROM order_info WHERE goods_id = $goods AND status <> 2 GROUP BY user_id HAVING COUNT(*) > 1) d")
  mysql_stock=$(sql "SELECT stock FROM seckill_goods WHERE goods_id = $goods")
  handed_out=$((STOCK - redis_stock))
  sql "SELECT user_id FROM seckill_order WHERE goods_id = $goods" | sort >"$work/with_order"
  # queued shoppers: an order, seen within 10 s of max(new primary answering, their 202)
  local queued lost late worst confirming unsettled after
  read -r queued lost late worst < <(awk -v tnew="$t_new" 'NR == FNR { has[$1] = 1; next }
    $2 == "queued" { q++; if (!has[$1] || $5 <= 0) l++; from = ($3 > tnew) ? $3 : tnew;
      if ($4 > 0 && $4 - from > w) w = $4 - from; if ($4 <= 0 || $4 - from > 10) late++ }
    END { printf "%d %d %d %.1f\n", q, l, late, w }' "$work/with_order" "$work/answers")
  confirming=$(awk '$2 == "confirming"' "$work/answers" | wc -l)
  unsettled=$(awk '$2 == "confirming" && $5 == 0' "$work/answers" | wc -l)
  after=$(awk -v tnew="$t_new" '($2 == "queued" || $2 == "confirming") && $3 > tnew' "$work/answers" | wc -l)
  local failures=0 passes=0
  echo
  echo "failover drill ($mode): $STOCK units, $SHOPPERS shoppers; $queued told \"queued\", $confirming \"being confirmed\""
  check "the kill hit while the sale was selling" "$([ "$stock_at_kill" -gt 0 ] && [ "$stock_at_kill" -lt "$STOCK" ] && echo 1)" "$stock_at_kill units left at the kill"
  check "every \"queued\" shopper has an order" "$([ "$lost" = 0 ] && echo 1)" "$lost without"
  check "and saw it within 10 s of the new primary" "$([ "$late" = 0 ] && echo 1)" "$late late; slowest ${worst} s after the new primary (or their 202)"
  check "every \"being confirmed\" shopper learnt the outcome" "$([ "$unsettled" = 0 ] && echo 1)" "$unsettled of $confirming still unknown"
  check "nobody twice" "$([ "$twice" = 0 ] && echo 1)" "$twice duplicated"
  check "no oversell" "$([ "$orders" -le "$STOCK" ] && echo 1)" "$orders <= $STOCK"
  check "orders = units Redis handed out" "$([ "$orders" = "$handed_out" ] && echo 1)" "$orders orders, $handed_out handed out"
  check "MySQL stock + orders = initial" "$([ $((mysql_stock + orders)) = "$STOCK" ] && echo 1)" "$mysql_stock + $orders"
  check "queue drained" "$([ "$left" = 0 ] && echo 1)" "$left entries left"
  check "the audit is clean after recovery" "$audit_ok" "$(echo "$audit_out" | head -n 1)"
  check "sold out after the failover (it went on selling)" "$([ "$redis_stock" = 0 ] && [ "$after" -gt 0 ] && echo 1)" "$redis_stock left; $after admitted after the new primary answered"
  echo "failover ($mode): $passes passed, $failures failed"
  [ "$failures" = 0 ]
}

for mode in $MODES; do
  drill "$mode" || overall=1
done
if [ "$overall" = 0 ]; then echo "failover drill: PASS"; else echo "failover drill: FAIL"; fi
exit "$overall"
