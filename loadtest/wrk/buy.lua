-- wrk script: every request is one shopper's buy, shoppers taken in turn from the token CSV.
-- Environment: TOKENS (the `flashgate users` CSV), GOODS (goods id), HIDDEN_PATH (the path every
-- shopper was issued for the benchmark).
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
  local uri = "/api/seckill/" .. os.getenv("HIDDEN_PATH") .. "/orders"
  local body = '{"goodsId":' .. goods .. '}'
  for line in io.lines(os.getenv("TOKENS")) do
    local tok = line:match("^%d+,(%x+)$")
    if tok then
      reqs[#reqs + 1] = wrk.format("POST", uri, {
        ["Authorization"] = "Bearer " .. tok,
        ["Content-Type"] = "application/json",
      }, body)
    end
  end
  -- threads start far apart in the list, so they buy for different shoppers
  i = math.floor((offset or 0) * #reqs / 2)
end

function request()
  i = i + 1
  return reqs[(i % #reqs) + 1]
end
