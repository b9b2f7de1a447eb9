-- wrk script for test/bench/webhook_bench.sh: POSTs pre-signed webhook bodies
-- from $WH_REQS (one "signature TAB body" per line), each thread a disjoint
-- stride of them, so that every request is a first-time status.
local counter = 0
local threads = {}

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local reqs = {}
local i = 0

function init(args)
   local n = 0
   for line in io.lines(os.getenv("WH_REQS")) do
      local sig, body = line:match("^(%S+)\t(.*)$")
      if sig and n % 2 == tid then
         reqs[#reqs + 1] = wrk.format("POST", "/webhook",
            {["X-Hub-Signature-256"] = sig, ["Content-Type"] = "application/json"}, body)
      end
      n = n + 1
   end
end

function request()
   i = i + 1
   return reqs[((i - 1) % #reqs) + 1]
end
