-- wrk script: every request carries the next of the bench's session tokens, so a run
-- spreads over all live sessions. Method, path and an optional JSON body (BENCH_BODY, a
-- file) come from the environment; a `{id}` in the path becomes a user id spread over
-- 1..BENCH_USERS.
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  tokens[#tokens + 1] = line
end
local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH")
local body = nil
if os.getenv("BENCH_BODY") then
  local file = io.open(os.getenv("BENCH_BODY"))
  body = file:read("*a")
  file:close()
end

local counter = 0
function setup(thread)
  thread:set("offset", counter * 7919)
  counter = counter + 1
end

local i = 0
request = function()
  i = i + 1
  local token = tokens[((offset + i) % #tokens) + 1]
  local headers = { ["Authorization"] = "Bearer " .. token }
  if body then
    headers["Content-Type"] = "application/json"
  end
  local users = tonumber(os.getenv("BENCH_USERS") or "0")
  local target = path
  if users > 0 then
    target = path:gsub("{id}", tostring(((offset + i) * 7919) % users + 1))
  end
  return wrk.format(method, target, headers, body)
end
