#!/usr/bin/env python3
"""Hands every shopper of a token CSV the same hidden path digest in each sale named, as
lua/issue_path.lua would (bound to their token: the user's key holds DIGEST.PRINT, PRINT the
first 16 hex digits of SHA-1 of the token), for an hour; the benchmarks then buy with
USER-DIGEST (loadtest/wrk/buy.lua) without 400,000 path requests first. Writes Redis protocol
for `redis-cli --pipe`.

Usage: seed-paths.py TOKENS_CSV NAMESPACE DIGEST GOODS... | redis-cli --pipe
"""
import csv
import hashlib
import sys

tokens, ns, digest, sales = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
out = sys.stdout.buffer


def bulk(s):
    b = s.encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


for row in csv.DictReader(open(tokens)):
    value = f"{digest}.{hashlib.sha1(row['token'].encode()).hexdigest()[:16]}"
    for goods in sales:
        key = f"{ns}sk:{{g:{goods}}}:u:{row['userId']}"
        out.write(b"*5\r\n" + bulk("SET") + bulk(key) + bulk(value) + bulk("EX") + bulk("3600"))
