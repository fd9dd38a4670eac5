-- wrk script: every shopper asks for their hidden path once (GET /api/seckill/path, the request
-- a shopper's page makes before their buy), and the paths the edge issued are written to
-- PATHS_OUT.N (one USER-DIGEST a line, N the thread) for loadtest/wrk/buy.lua (PATHS). Each of
-- the THREADS threads (default 2, as wrk -t) takes its share of the token CSV, goes through it
-- once and stops (wrk's -d is then only an upper bound).
-- Environment: TOKENS (the `flashgate users` CSV), GOODS (goods id), THREADS, PATHS_OUT.
local count = 0
function setup(thread)
  thread:set("id", count)
  count = count + 1
end

local reqs = {}
local i = 0
local answered = 0
local out

function init(args)
  local n = tonumber(os.getenv("THREADS") or "2")
  local uri = "/api/seckill/path?goodsId=" .. os.getenv("GOODS")
  local all = {}
  for line in io.lines(os.getenv("TOKENS")) do
    local tok = line:match("^%d+,(%x+)$")
    if tok then all[#all + 1] = tok end
  end
  local share = math.ceil(#all / n)
  for k = (id or 0) * share + 1, math.min(#all, ((id or 0) + 1) * share) do
    reqs[#reqs + 1] = wrk.format("GET", uri, { ["Authorization"] = "Bearer " .. all[k] })
  end
  out = io.open(os.getenv("PATHS_OUT") .. "." .. (id or 0), "w")
  out:setvbuf("line")
end

function request()
  i = i + 1
  return reqs[((i - 1) % #reqs) + 1]
end

function response(status, headers, body)
  if not out then return end -- answers still arriving after the thread stopped
  answered = answered + 1
  local path = body:match('"data":"(%d+%-%x+)"')
  if path then out:write(path, "\n") end
  if answered >= #reqs then
    out:close()
    out = nil
    wrk.thread:stop()
  end
end
