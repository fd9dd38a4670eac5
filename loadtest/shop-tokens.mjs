#!/usr/bin/env node
// Signs a pretend shop's JWTs for the benchmarks (loadtest/shop-tokens.sh): one per line of
// standard input (`USER_ID<TAB>SUBJECT`: the users rows made for the subjects), with a new key
// of algorithm ALG (EdDSA, ES256 or RS256; Node's own crypto, no packages), valid an hour.
// Writes `userId,token` lines to OUT_CSV (the form of `flashgate users`, for wrk/buy.lua) and
// the key set to JWKS_FILE (its kid is the algorithm's name).
//
// Usage: node loadtest/shop-tokens.mjs ALG ISSUER AUDIENCE OUT_CSV JWKS_FILE < users.tsv
import crypto from "node:crypto";
import { readFileSync, writeFileSync, existsSync } from "node:fs";

const [alg, iss, aud, out, jwksFile] = process.argv.slice(2);
const kinds = {
  EdDSA: ["ed25519", {}],
  ES256: ["ec", { namedCurve: "P-256" }],
  RS256: ["rsa", { modulusLength: 2048 }],
};
const [type, options] = kinds[alg];
const { privateKey, publicKey } = crypto.generateKeyPairSync(type, options);
const jwk = { ...publicKey.export({ format: "jwk" }), kid: alg, alg, use: "sig" };
const keys = existsSync(jwksFile) ? JSON.parse(readFileSync(jwksFile, "utf8")).keys : [];
writeFileSync(jwksFile, JSON.stringify({ keys: [...keys.filter((k) => k.kid !== alg), jwk] }));

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
const head = b64({ alg, typ: "JWT", kid: alg });
const now = Math.floor(Date.now() / 1000);
const sign = (data) => {
  if (alg === "EdDSA") return crypto.sign(null, data, privateKey);
  // JWS wants ECDSA signatures as r||s (IEEE P1363), not DER
  return crypto.sign("sha256", data, alg === "ES256" ? { key: privateKey, dsaEncoding: "ieee-p1363" } : privateKey);
};
const lines = [];
for (const line of readFileSync(0, "utf8").split("\n")) {
  const [id, sub] = line.split("\t");
  if (!sub) continue;
  const body = b64({ iss, aud, sub, iat: now, exp: now + 3600 });
  lines.push(`${id},${head}.${body}.${sign(Buffer.from(`${head}.${body}`)).toString("base64url")}`);
}
writeFileSync(out, `userId,token\n${lines.join("\n")}\n`);
