-- wrk script: every request is one shopper's buy, shoppers taken in turn from the token CSV.
-- Environment: TOKENS (the `flashgate users` CSV), GOODS (goods id), HIDDEN_PATH (the path every
-- shopper was issued for the benchmark).
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do
  local tok = line:match("^%d+,(%x+)$")
  if tok then tokens[#tokens + 1] = tok end
end
local goods = os.getenv("GOODS")
local uri = "/api/seckill/" .. os.getenv("HIDDEN_PATH") .. "/orders"
local body = '{"goodsId":' .. goods .. '}'

local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

local i = 0
function init(args)
  -- threads start far apart in the list, so they buy for different shoppers
  i = math.floor((offset or 0) * #tokens / 2)
end

function request()
  i = i + 1
  local tok = tokens[(i % #tokens) + 1]
  return wrk.format("POST", uri, {
    ["Authorization"] = "Bearer " .. tok,
    ["Content-Type"] = "application/json",
  }, body)
end
