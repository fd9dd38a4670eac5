#!/usr/bin/env python3
"""Hands every shopper of a token CSV the same hidden path digest in each sale named, as
lua/issue_path.lua would (bound to their token: the user's key holds DIGEST.PRINT, PRINT the
first 16 hex digits of SHA-1 of the token), for an hour; the benchmarks then buy with
USER-DIGEST (loadtest/wrk/buy.lua) without 400,000 path requests first. Writes Redis protocol
for `redis-cli --pipe`.

Usage: seed-paths.py [--bare] TOKENS_CSV NAMESPACE DIGEST GOODS... | redis-cli --pipe
  --bare: the key holds DIGEST alone, as revisions before paths were bound to tokens wrote it
  (for a baseline run of such a revision: loadtest/two-edge.sh)
"""
import csv
import hashlib
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


for row in csv.DictReader(open(tokens)):
    value = digest if bare else f"{digest}.{hashlib.sha1(row['token'].encode()).hexdigest()[:16]}"
    for goods in sales:
        key = f"{ns}sk:{{g:{goods}}}:u:{row['userId']}"
        out.write(b"*5\r\n" + bulk("SET") + bulk(key) + bulk(value) + bulk("EX") + bulk("3600"))
