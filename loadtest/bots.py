#!/usr/bin/env python3
"""One round of loadtest/bots.sh: people and a bot enter one draw sale (docs/draws.md).

People: the first PEOPLE accounts of TOKENS_CSV, each from an address of its own (10.x.y.z, told
to the edge in X-Forwarded-For, which it believes from its trusted proxy, this machine), each
entering once at a random moment of the registration window (human pace), on THREADS threads.

The bot: the next BOT accounts, spread over BOT_ADDRESSES addresses (172.16.0.N), entering one
after another as fast as it can on BOT_PROCS processes until registration closes, solving each
challenge with a native solver (hashlib's SHA-256, counting up as the page's worker does).

Both fetch GET /api/draws/G/challenge, solve it and POST /api/draws/G/entries, as the page does;
a refusal for a proof gone stale (expired, too easy: the address's work rose) fetches a new one.

After the draw it reads the published winners and each bot account's digest, and prints one
JSON line: entries and winners of each side, the bot's shares, and the CPU-seconds per entry:
the bot's, all its processes' CPU time (solving, work cut short at the close, requests) over its
entries; a person's, the CPU time of their solving (the same native solver: a phone's browser
takes longer, see loadtest/pow-solve.mjs).

Usage: bots.py TOKENS_CSV BASE GOODS REGISTER_UNTIL_MS PEOPLE BOT BOT_ADDRESSES [THREADS] [BOT_PROCS]
"""
import base64
import csv
import hashlib
import json
import multiprocessing
import random
import sys
import threading
import time
import urllib.error
import urllib.request

STALE = {500545, 500547, 500551}


def call(base, method, path, token=None, body=None, addr=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if addr:
        headers["X-Forwarded-For"] = addr
    req = urllib.request.Request(base + path, method=method, headers=headers,
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.load(e)
        except Exception:
            return e.code, {}


def solve(c):
    """Counts n up from 0 until SHA-256(salt + n) is the challenge; the proof, base64 JSON."""
    salt, want, top = c["salt"].encode(), bytes.fromhex(c["challenge"]), c["maxnumber"]
    for n in range(top + 1):
        if hashlib.sha256(salt + str(n).encode()).digest() == want:
            sol = {k: c[k] for k in ("algorithm", "challenge", "salt", "signature")}
            sol["number"] = n
            return base64.b64encode(json.dumps(sol).encode()).decode()
    return None


def enter(base, goods, token, addr, deadline_ms):
    """One account's entry: (entered, cpu seconds solving, hashes' maxnumber seen)."""
    cpu = 0.0
    while time.time() * 1000 < deadline_ms:
        s, r = call(base, "GET", f"/api/draws/{goods}/challenge", addr=addr)
        if s != 200:
            return False, cpu
        began = time.thread_time()
        proof = solve(r["data"])
        cpu += time.thread_time() - began
        if time.time() * 1000 >= deadline_ms:
            return False, cpu
        s, r = call(base, "POST", f"/api/draws/{goods}/entries", token, {"proof": proof}, addr)
        if s == 200:
            return not r["data"]["again"], cpu
        if r.get("code") not in STALE:
            return False, cpu
    return False, cpu


def bot_worker(args):
    base, goods, accounts, addresses, deadline_ms = args
    entered, cpu = [], 0.0
    began = time.process_time()
    for i, (uid, token) in accounts:
        if time.time() * 1000 >= deadline_ms:
            break
        ok, _ = enter(base, goods, token, f"172.16.0.{i % addresses + 1}", deadline_ms)
        if ok:
            entered.append(uid)
    cpu = time.process_time() - began
    return entered, cpu


def main():
    tokens, base, goods, until = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    people_n, bot_n, bot_addresses = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    threads_n = int(sys.argv[8]) if len(sys.argv) > 8 else 32
    procs = int(sys.argv[9]) if len(sys.argv) > 9 else 1
    rows = [(r["userId"], r["token"]) for r in csv.DictReader(open(tokens))]
    people, bot = rows[:people_n], rows[people_n:people_n + bot_n]
    assert len(people) == people_n and len(bot) == bot_n, "not enough accounts in the tokens file"
    now = time.time() * 1000
    window = (until - now) * 0.9

    # the bot, on its own processes, from the start
    shares = [[] for _ in range(procs)]
    for i, acct in enumerate(bot):
        shares[i % procs].append((i, acct))
    pool = multiprocessing.Pool(procs)
    bot_run = pool.map_async(bot_worker, [(base, goods, s, bot_addresses, until) for s in shares])

    # the people, each at a moment of their own
    people_entered, people_cpu, lock = [], [0.0], threading.Lock()
    plan = sorted((now + random.random() * window, i, acct) for i, acct in enumerate(people))
    cursor = [0]

    def person_thread():
        while True:
            with lock:
                if cursor[0] >= len(plan):
                    return
                at, i, (uid, token) = plan[cursor[0]]
                cursor[0] += 1
            time.sleep(max(0.0, at / 1000 - time.time()))
            addr = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            ok, cpu = enter(base, goods, token, addr, until)
            with lock:
                people_cpu[0] += cpu
                if ok:
                    people_entered.append(uid)

    threads = [threading.Thread(target=person_thread) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = bot_run.get()
    pool.close()
    bot_entered = [u for e, _ in results for u in e]
    bot_cpu = sum(c for _, c in results)

    # the draw: by itself at registerUntil
    for _ in range(600):
        s, r = call(base, "GET", f"/api/draws/{goods}")
        if s == 200 and r["data"]["phase"] == "claiming":
            break
        time.sleep(0.5)
    s, published = call(base, "GET", f"/api/draws/{goods}/published")
    winners = set(published["winners"])
    bot_tokens = dict(bot)
    bot_won = 0
    for uid in bot_entered:
        s, r = call(base, "GET", f"/api/draws/{goods}", bot_tokens[uid])
        if r["data"]["you"] and r["data"]["you"]["digest"] in winners:
            bot_won += 1
    entries = len(published["entries"])
    print(json.dumps({
        "entries": entries,
        "people_entries": len(people_entered),
        "bot_entries": len(bot_entered),
        "units": published["units"],
        "bot_winners": bot_won,
        "bot_share_of_entries": round(len(bot_entered) / entries, 4) if entries else 0,
        "bot_share_of_winners": round(bot_won / len(winners), 4) if winners else 0,
        "bot_cpu_s_per_entry": round(bot_cpu / len(bot_entered), 4) if bot_entered else None,
        "bot_cpu_s": round(bot_cpu, 2),
        "person_cpu_s_per_entry": round(people_cpu[0] / len(people_entered), 4) if people_entered else None,
    }))


if __name__ == "__main__":
    main()
