#!/usr/bin/env python3
"""The shoppers of the fault drills (loadtest/chaos.sh, loadtest/failover.sh).

Each shopper asks for a hidden path and buys, trying again every 200 ms while the edge is down
or busy (as the page does), until answered or the drill's time is up; after a 202 (queued, or
"being confirmed", code 500509) or a 409 (a try again after an answer that was lost) it polls
/api/seckill/result every 200 ms for up to POLL seconds, beside the next shoppers, as that
shopper's own page would. They arrive evenly over 80% of the drill, on THREADS threads.

Usage: shoppers.py TOKENS_CSV PORT GOODS SECONDS [POLL=30] [THREADS=32]
Prints one line a shopper: user kind answered seen result
  kind: queued, confirming, duplicate, sold_out or none (never answered)
  answered, seen: epoch seconds of the answer and of the result poll's settling (0: never)
  result: what the poll settled on (an order id, -1), or 0
"""
import csv
import json
import sys
import threading
import time
import urllib.error
import urllib.request

tokens, port, goods, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
poll_for = float(sys.argv[5]) if len(sys.argv) > 5 else 30.0
threads_n = int(sys.argv[6]) if len(sys.argv) > 6 else 32
base = f"http://127.0.0.1:{port}"
users = list(csv.DictReader(open(tokens)))
deadline = time.time() + seconds
out, polls, lock = [], [], threading.Lock()


def call(method, path, token, body=None):
    req = urllib.request.Request(
        base + path, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.load(e)
        except Exception:
            return e.code, {}
    except Exception:
        return 0, {}  # edge down: connection refused or reset


def poll(token):
    until = time.time() + poll_for
    while time.time() < until:
        s, b = call("GET", f"/api/seckill/result?goodsId={goods}", token)
        if s == 200 and b.get("data", 0) != 0:
            return time.time(), b["data"]
        time.sleep(0.2)
    return 0, 0


def shopper(u):
    kind, answered = "none", 0
    while time.time() < deadline:
        s, b = call("GET", f"/api/seckill/path?goodsId={goods}", u["token"])
        if s == 200:
            s, b = call("POST", f"/api/seckill/{b['data']}/orders", u["token"], {"goodsId": goods})
            kind = {202: "queued" if b.get("code") == 0 else "confirming",
                    409: "duplicate", 410: "sold_out"}.get(s, "none")
        elif s in (409, 410):  # the path is refused: already bought, or sold out
            kind = "duplicate" if s == 409 else "sold_out"
        if kind != "none":
            answered = time.time()
            break
        time.sleep(0.2)

    def settle():
        seen, result = (0, 0)
        if kind in ("queued", "confirming", "duplicate"):
            seen, result = poll(u["token"])
        with lock:
            out.append(f"{u['userId']} {kind} {answered:.3f} {seen:.3f} {result}")

    t = threading.Thread(target=settle)
    t.start()
    with lock:
        polls.append(t)


def worker(chunk):
    for u in chunk:
        shopper(u)
        time.sleep(pace)  # spread the shoppers evenly over the drill


pace = seconds * 0.8 / (len(users) / threads_n)
threads = [threading.Thread(target=worker, args=(users[i::threads_n],)) for i in range(threads_n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for t in polls:
    t.join()
print("\n".join(out))
