-- wrk script: the waiting room. Every request is one shopper's join (ROOM_MODE=join: POST
-- /api/seckill/room) or position poll (ROOM_MODE=look: GET /api/seckill/room?goodsId=),
-- shoppers taken in turn from the token CSV. Environment: TOKENS (the `flashgate users` CSV),
-- GOODS (goods id), ROOM_MODE. Requests are built once, in init() (see buy.lua for why).
local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

local reqs = {}
local i = 0

function init(args)
  local goods = os.getenv("GOODS")
  local join = os.getenv("ROOM_MODE") == "join"
  for line in io.lines(os.getenv("TOKENS")) do
    local tok = line:match("^%d+,(%x+)$")
    if tok then
      if join then
        reqs[#reqs + 1] = wrk.format("POST", "/api/seckill/room", {
          ["Authorization"] = "Bearer " .. tok,
          ["Content-Type"] = "application/json",
        }, '{"goodsId":' .. goods .. '}')
      else
        reqs[#reqs + 1] = wrk.format("GET", "/api/seckill/room?goodsId=" .. goods, {
          ["Authorization"] = "Bearer " .. tok,
        })
      end
    end
  end
  i = math.floor((offset or 0) * #reqs / 2)
end

function request()
  i = i + 1
  return reqs[(i % #reqs) + 1]
end
