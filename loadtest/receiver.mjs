#!/usr/bin/env node
// A shop's webhook endpoint for the benchmarks and drills (loadtest/events-bench.sh,
// loadtest/chaos.sh): answers every POST 204 after checking its Standard Webhooks signature
// against SECRET (a bad one is answered 401 and counted), keep-alive, Node's own http and crypto.
// GET /stats answers {requests, ids, badSignatures}: requests taken, distinct webhook-ids.
//
// Usage: SECRET=whsec_... node loadtest/receiver.mjs PORT
import { createServer } from "node:http";
import crypto from "node:crypto";

const port = Number(process.argv[2]);
const key = Buffer.from((process.env.SECRET || "").replace(/^whsec_/, ""), "base64");
const ids = new Set();
let requests = 0, bad = 0;
createServer((req, res) => {
  if (req.method === "GET") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ requests, ids: ids.size, badSignatures: bad }));
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const id = req.headers["webhook-id"], ts = req.headers["webhook-timestamp"];
    const want = "v1," + crypto.createHmac("sha256", key).update(`${id}.${ts}.`).update(body).digest("base64");
    if (!(req.headers["webhook-signature"] || "").split(" ").includes(want)) {
      bad += 1;
      res.writeHead(401).end();
      return;
    }
    requests += 1;
    ids.add(id);
    res.writeHead(204).end();
  });
}).listen(port, "127.0.0.1");
