-- wrk script: every request is one shopper's login (the right demo password), shoppers taken in
-- turn from a file of mobiles, one a line. Environment: MOBILES (the file), CLIENT_HASH (what the
-- page sends for the demo password 123456; the default is it).
--
-- The requests are built once, in init(), as in buy.lua.
local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

local reqs = {}
local i = 0

function init(args)
  local hash = os.getenv("CLIENT_HASH") or "d3b1294a61a07da9b49b6e22b2cbd7f9"
  for line in io.lines(os.getenv("MOBILES")) do
    local m = line:match("^(1%d+)$")
    if m then
      reqs[#reqs + 1] = wrk.format("POST", "/api/login", {
        ["Content-Type"] = "application/json",
      }, '{"mobile":"' .. m .. '","password":"' .. hash .. '"}')
    end
  end
  i = math.floor((offset or 0) * #reqs / 2)
end

function request()
  i = i + 1
  return reqs[(i % #reqs) + 1]
end
