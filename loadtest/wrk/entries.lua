-- wrk script: draw entries (POST /api/draws/GOODS/entries), the lines of ENTRIES in turn: a
-- shopper's token, a proof of work and the address it was issued to, tab-separated (made by
-- loadtest/draw-bench.sh). Each of the THREADS threads (default 2, as wrk -t) takes its share
-- and goes through it in order for wrk's -d; past its end it starts again, and those are
-- answered as the first entry again (draw-bench.sh counts the entries recorded, and says when
-- the list ran out). Environment: ENTRIES, GOODS, THREADS.
local count = 0
function setup(thread)
  thread:set("id", count)
  count = count + 1
end

local reqs = {}
local i = 0

function init(args)
  local n = tonumber(os.getenv("THREADS") or "2")
  local uri = "/api/draws/" .. os.getenv("GOODS") .. "/entries"
  local all = {}
  for line in io.lines(os.getenv("ENTRIES")) do all[#all + 1] = line end
  local share = math.ceil(#all / n)
  for k = (id or 0) * share + 1, math.min(#all, ((id or 0) + 1) * share) do
    local tok, proof, addr = all[k]:match("^(%x+)\t(%S+)\t(%S+)$")
    reqs[#reqs + 1] = wrk.format("POST", uri, {
      ["Authorization"] = "Bearer " .. tok, ["Content-Type"] = "application/json",
      ["X-Forwarded-For"] = addr }, '{"proof":"' .. proof .. '"}')
  end
end

function request()
  i = i + 1
  return reqs[((i - 1) % #reqs) + 1]
end
