#!/usr/bin/env bash
# The edge's resident memory with 10,000 idle connections, on its own (bench.sh step 6 measures it
# after the load runs). Usage: loadtest/idle-rss.sh [BIN] [PORT]; prints "N MiB before, M MiB with 10,000 idle".
# Run it several times: on a shared box the figure varies by tens of MiB from run to run.
set -e
bin=${1:-target/release/flashgate}; port=${2:-18301}
export FLASHGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/fg_rss_$port" FLASHGATE_NAMESPACE="rss$port:" FLASHGATE_LISTEN="127.0.0.1:$port" FLASHGATE_LOG=warn
# every idle connection comes from loopback: one address
export FLASHGATE_MAX_CONNECTIONS_PER_ADDRESS=20000
"$bin" migrate >/dev/null 2>&1
"$bin" serve 2>/dev/null & pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
# some load first, as in the bench
wrk -t2 -c50 -d3s "http://127.0.0.1:$port/healthz" >/dev/null
b=$(ps -o rss= -p $pid)
python3 - "$port" <<'PY' &
import socket, sys, time, resource
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(10000)]
time.sleep(4)
PY
ip=$!; sleep 3; i=$(ps -o rss= -p $pid); wait $ip || true
kill $pid; wait $pid 2>/dev/null || true
mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS fg_rss_$port"
echo "$((b/1024)) MiB before, $((i/1024)) MiB with 10,000 idle"
