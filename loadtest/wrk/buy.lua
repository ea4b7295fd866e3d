-- wrk script: every request is a purchase by a distinct buyer (token from a file), with a
-- fresh idempotency key. Usage: wrk -tT -s buy.lua <url> -- <tokens-file> <activity-id> <T>
-- With "-" as the activity id it sends the same requests (same headers, same Lua work in
-- wrk) as GET /healthz: the HTTP ceiling for requests of this shape, with the client's own
-- cost equal on both sides of the ratio.
local tokens, method, path = {}, nil, nil
local thread_id, n, stride = 0, 0, 1

function setup(thread)
  thread:set("tid", setup_count or 0)
  setup_count = (setup_count or 0) + 1
end

function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  if args[2] == "-" then
    method, path = "GET", "/healthz"
  else
    method, path = "POST", "/api/v1/activities/" .. args[2] .. "/purchase"
  end
  thread_id = tonumber(tid) or 0
  stride = tonumber(args[3]) or 1
end

function request()
  -- Thread t of T takes buyers t, t+T, t+2T, …: distinct across threads.
  local i = (n * stride + thread_id) % #tokens + 1
  n = n + 1
  return wrk.format(method, path, {
    ["Authorization"] = "Bearer " .. tokens[i],
    ["Idempotency-Key"] = "k" .. i,
  })
end

-- No response() callback: it would make wrk parse every reply in Lua; the service's
-- /metrics counts outcomes instead.
function done(summary, latency, requests)
  io.write(string.format("p50_ms=%.2f p99_ms=%.2f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
