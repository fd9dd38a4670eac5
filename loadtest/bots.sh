#!/usr/bin/env bash
# Entries cost bots, not people (issue #43, docs/draws.md): one draw sale, twice, with the
# per-address difficulty on (FLASHGATE_DRAW_POW_PER_ADDRESS=5) and off (0):
#   - BOTS_PEOPLE accounts (10,000) entering at human pace, each from an address of its own,
#   - a bot with BOTS_BOT_ACCOUNTS accounts (1,000) from BOTS_BOT_ADDRESSES addresses (10),
#     entering one after another as fast as it can with a native solver (loadtest/bots.py:
#     Python's hashlib, counting up as the page's worker does), on BOTS_BOT_PROCS processes (1),
# during a registration of BOTS_REGISTER_S seconds (300) for BOTS_UNITS units (100). The edge
# trusts this machine as its proxy (FLASHGATE_TRUSTED_PROXIES=127.0.0.1/32), so X-Forwarded-For
# lets one machine speak for many addresses. Prints, for each round, the bot's share of entries
# and of winners and the CPU-seconds the bot spent per entry against a person's.
#
# Usage: loadtest/bots.sh   (BOTS_PEOPLE=10000 BOTS_BOT_ACCOUNTS=1000 BOTS_BOT_ADDRESSES=10
#        BOTS_UNITS=100 BOTS_REGISTER_S=300 BOTS_BOT_PROCS=1 BOTS_THREADS=32 BOTS_POW_MAX=300000
#        FLASHGATE_BIN=target/release/flashgate, built if missing)
# A quick check that it works: BOTS_PEOPLE=500 BOTS_BOT_ACCOUNTS=100 BOTS_REGISTER_S=60 BOTS_UNITS=20
set -euo pipefail
cd "$(dirname "$0")/.."
PEOPLE=${BOTS_PEOPLE:-10000}
BOT=${BOTS_BOT_ACCOUNTS:-1000}
ADDRS=${BOTS_BOT_ADDRESSES:-10}
UNITS=${BOTS_UNITS:-100}
REGISTER_S=${BOTS_REGISTER_S:-300}
PROCS=${BOTS_BOT_PROCS:-1}
THREADS=${BOTS_THREADS:-32}
POW_MAX=${BOTS_POW_MAX:-300000}
PORT=${BOTS_PORT:-18480}

bin=${FLASHGATE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -q
  bin=$PWD/target/release/flashgate
fi
work=$(mktemp -d)
ns="bots$$:"
db="flashgate_bots_$$"
token=$(openssl rand -hex 24)
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db" FLASHGATE_NAMESPACE="$ns"
export FLASHGATE_LISTEN="127.0.0.1:$PORT" FLASHGATE_ADMIN_LISTEN="127.0.0.1:$((PORT + 1))"
export FLASHGATE_ADMIN_TOKEN="$token" FLASHGATE_LOG=warn FLASHGATE_CAPTCHA=off
export FLASHGATE_TRUSTED_PROXIES=127.0.0.1/32 FLASHGATE_DRAW_POW_MAX="$POW_MAX"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true
  redis-cli --scan --pattern "${ns}*" | xargs -r -n 1000 redis-cli unlink >/dev/null
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`$db\`"
  rm -rf "$work"
}
trap cleanup EXIT

echo "== $PEOPLE people, a bot with $BOT accounts on $ADDRS addresses; $UNITS units, registration ${REGISTER_S}s, maxnumber $POW_MAX"
"$bin" migrate 2>/dev/null
"$bin" users --count "$((PEOPLE + BOT))" --out "$work/tokens.csv" 2>/dev/null >/dev/null

round() { # per-address: the FLASHGATE_DRAW_POW_PER_ADDRESS of this round
  FLASHGATE_DRAW_POW_PER_ADDRESS=$1 "$bin" all 2>"$work/serve-$1.log" & pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  local from until goods
  from=$(($(date +%s%3N) + 2000))
  until=$((from + REGISTER_S * 1000))
  goods=$(curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    "http://127.0.0.1:$((PORT + 1))/api/admin/sales" -d "{\"name\": \"Bots\", \"title\": \"Bots\",
      \"price\": 2, \"salePrice\": 1, \"stock\": $UNITS, \"startAt\": $until, \"endAt\": $((until + 3600000)),
      \"mode\": \"draw\", \"registerFrom\": $from, \"registerUntil\": $until, \"claimFor\": 600}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["goodsId"])')
  while [ "$(date +%s%3N)" -lt "$from" ]; do sleep 0.1; done
  python3 loadtest/bots.py "$work/tokens.csv" "http://127.0.0.1:$PORT" "$goods" "$until" \
    "$PEOPLE" "$BOT" "$ADDRS" "$THREADS" "$PROCS" > "$work/round-$1.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  python3 - "$work/round-$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
label = f"per-address difficulty {'on (every ' + sys.argv[2] + ' entries doubles)' if sys.argv[2] != '0' else 'off'}"
print(f"  {label}")
print(f"    entries {r['entries']} (people {r['people_entries']}, bot {r['bot_entries']}), units {r['units']}")
print(f"    bot's share: {100 * r['bot_share_of_entries']:.1f}% of entries, {100 * r['bot_share_of_winners']:.1f}% of winners ({r['bot_winners']})")
print(f"    CPU-seconds per entry: bot {r['bot_cpu_s_per_entry']} (all its {r['bot_cpu_s']} s), person {r['person_cpu_s_per_entry']} (solving)")
PY
}

round 5
round 0
