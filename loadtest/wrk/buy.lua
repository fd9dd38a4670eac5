-- wrk script: every request is one shopper's buy, shoppers taken in turn from the token CSV.
-- Environment: TOKENS (the `flashgate users` CSV), GOODS (goods id), and the shoppers' hidden
-- paths, either HIDDEN_PATH (the shoppers were issued paths for the benchmark by
-- loadtest/seed-paths.py, which lists each one's sealed USER-DIGEST in TOKENS.paths.GOODS; a
-- revision from before paths were sealed, with no such list, buys with USER-HIDDEN_PATH) or PATHS (a file of the paths the edge
-- issued, one USER-DIGEST a line, as loadtest/wrk/paths.lua writes them; a shopper without one
-- is left out). HIDDEN_PATH_BARE=1 buys with the digest alone, the form of revisions before
-- paths were bound to tokens (a baseline run: loadtest/two-edge.sh). The tokens may be flashgate
-- session tokens or a shop's JWTs (loadtest/shop-tokens.mjs). ONCE=1: each shopper buys once,
-- the two threads taking halves of the list, and each thread stops when its half is done (so a
-- pass is every shopper's first buy, however fast the edge). QUANTITY=N sends `quantity` N with
-- each buy (a sale seeded with --per-buy N or more; absent or 1: the body as before).
--
-- The requests are built once, in init(): building one per request in Lua costs the load
-- generator more CPU than the edge spends answering it, on a box where they share the cores.
local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

local reqs = {}
local i = 0

function init(args)
  local goods = os.getenv("GOODS")
  local digest = os.getenv("HIDDEN_PATH")
  local bare = os.getenv("HIDDEN_PATH_BARE") == "1"
  local issued = {}
  local paths = os.getenv("PATHS")
  if paths == "" then paths = nil end
  -- loadtest/seed-paths.py seals each shopper's digest and lists them beside the token CSV
  if not paths and digest and not bare then
    local seeded = os.getenv("TOKENS") .. ".paths." .. goods
    local f = io.open(seeded)
    if f then f:close(); paths = seeded end
  end
  if paths then
    for line in io.lines(paths) do
      local user = line:match("^(%d+)%-%x+$")
      if user then issued[user] = line end
    end
  end
  local quantity = tonumber(os.getenv("QUANTITY") or "") or 1
  local body = '{"goodsId":' .. goods .. '}'
  if quantity > 1 then
    body = '{"goodsId":' .. goods .. ',"quantity":' .. quantity .. '}'
  end
  for line in io.lines(os.getenv("TOKENS")) do
    local user, tok = line:match("^(%d+),([%w%-_%.]+)$")
    local path = user and (paths and issued[user] or (digest and (bare and digest or (user .. "-" .. digest))))
    if path then
      reqs[#reqs + 1] = wrk.format("POST", "/api/seckill/" .. path .. "/orders", {
        ["Authorization"] = "Bearer " .. tok,
        ["Content-Type"] = "application/json",
      }, body)
    end
  end
  -- threads start far apart in the list, so they buy for different shoppers
  i = math.floor((offset or 0) * #reqs / 2)
  once = os.getenv("ONCE") == "1"
  last = math.floor(((offset or 0) + 1) * #reqs / 2)
  answered = i
end

function request()
  i = i + 1
  if once and i > last then
    return wrk.format("GET", "/healthz") -- this thread's half is sent: only waits for answers
  end
  return reqs[(i % #reqs) + 1]
end

function response()
  answered = answered + 1
  if once and answered >= last then
    wrk.thread:stop()
  end
end
