#!/usr/bin/env python3
"""Hands every shopper of a token CSV a hidden path in each sale named, as lua/issue_path.lua
would (bound to their token: the user's key holds DIGEST.PRINT, PRINT the first 16 hex digits of
SHA-1 of the token), for an hour; the benchmarks then buy with USER-DIGEST (loadtest/wrk/buy.lua,
loadtest/k6/flash_sale.js) without 400,000 path requests first. Writes Redis protocol for
`redis-cli --pipe`.

Each digest is sealed as the edge seals it (src/admission/path_seal.rs): the first 8 bytes of
DIGEST as the nonce, then the first 8 bytes of HMAC-SHA256(key, "GOODS:USER:PRINT:" + nonce),
the key being the namespace's `path:key` in Redis (made here with SET NX if no edge made it yet,
exactly as an edge would). So every shopper's digest differs: they are written, one USER-DIGEST a
line, to TOKENS_CSV.paths.GOODS, which buy.lua and flash_sale.js read when HIDDEN_PATH is set.
A revision from before paths were sealed takes these digests too (it compares them, whatever
they are, with what Redis holds).

Usage: seed-paths.py [--bare] TOKENS_CSV NAMESPACE DIGEST GOODS... | redis-cli --pipe
  --bare: the key holds DIGEST alone, as revisions before paths were bound to tokens wrote it
  (for a baseline run of such a revision: loadtest/two-edge.sh); nothing is sealed
"""
import csv
import hashlib
import hmac
import os
import secrets
import subprocess
import sys

args = sys.argv[1:]
bare = args[:1] == ["--bare"]
if bare:
    args = args[1:]
tokens, ns, digest, sales = args[0], args[1], args[2], args[3:]
out = sys.stdout.buffer


def bulk(s):
    b = s.encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def redis(*args):
    cli = ["redis-cli", "-u", os.environ.get("SEED_REDIS_URL", "redis://127.0.0.1:6379/"), "--raw"]
    return subprocess.run(cli + list(args), check=True, capture_output=True, text=True).stdout.strip()


seal_key = None
if not bare:
    redis("SET", f"{ns}path:key", secrets.token_hex(32), "NX")
    seal_key = bytes.fromhex(redis("GET", f"{ns}path:key"))
nonce = bytes.fromhex(digest)[:8]
lists = {goods: open(f"{tokens}.paths.{goods}", "w") for goods in sales} if not bare else {}

for row in csv.DictReader(open(tokens)):
    print_ = hashlib.sha1(row["token"].encode()).hexdigest()[:16]
    for goods in sales:
        if bare:
            value = digest
        else:
            mac = hmac.new(seal_key, f"{goods}:{row['userId']}:{print_}:".encode() + nonce, hashlib.sha256)
            sealed = (nonce + mac.digest()[:8]).hex()
            lists[goods].write(f"{row['userId']}-{sealed}\n")
            value = f"{sealed}.{print_}"
        key = f"{ns}sk:{{g:{goods}}}:u:{row['userId']}"
        out.write(b"*5\r\n" + bulk("SET") + bulk(key) + bulk(value) + bulk("EX") + bulk("3600"))
for f in lists.values():
    f.close()
