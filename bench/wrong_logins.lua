-- wrk: a flood of logins with wrong passwords for unknown, ever-changing usernames, so
-- that every one costs a password hash (the per-address limit is raised for the bench).
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"username": "flood%d_%d", "password": "not the password"}',
                             math.random(1, 1000000000), counter)
  return wrk.format("POST", "/api/users/login/", {["Content-Type"] = "application/json"}, body)
end
