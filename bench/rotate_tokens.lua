-- wrk script: every request carries the next of the bench's session tokens, so a run
-- spreads over all live sessions. Method and path come from the environment.
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  tokens[#tokens + 1] = line
end
local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH")

local counter = 0
function setup(thread)
  thread:set("offset", counter * 7919)
  counter = counter + 1
end

local i = 0
request = function()
  i = i + 1
  local token = tokens[((offset + i) % #tokens) + 1]
  return wrk.format(method, path, { ["Authorization"] = "Bearer " .. token })
end
