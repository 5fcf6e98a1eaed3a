-- wrk script for bench/run.py: a cookie jar per connection, and a JSON summary on stdout.
--
-- run.py starts wrk with as many threads as connections (-t N -c N): wrk keeps one Lua state
-- per thread, so one connection per thread gives every connection its own cookie, like N
-- browsers. Environment:
--   BENCH_COOKIES=keep   store each Set-Cookie (up to ';') and send it back (default)
--   BENCH_COOKIES=none   never send a cookie (anonymous traffic; response() is not even defined)
--   BENCH_COOKIE_FILE=f  thread i starts with line i of f as its Cookie header

local mode = os.getenv("BENCH_COOKIES") or "keep"
local cookie_file = os.getenv("BENCH_COOKIE_FILE")
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_index", threads)
end

local cookie = nil
local cached_cookie = nil
local cached_request = nil

function init(args)
  if cookie_file and cookie_file ~= "" then
    local lines = {}
    for line in io.lines(cookie_file) do
      if line ~= "" then lines[#lines + 1] = line end
    end
    if #lines > 0 then cookie = lines[((thread_index - 1) % #lines) + 1] end
  end
  cached_request = wrk.format(nil, nil)
end

function request()
  if cookie ~= cached_cookie then
    cached_cookie = cookie
    cached_request = wrk.format(nil, nil, {Cookie = cookie})
  end
  return cached_request
end

if mode ~= "none" then
  function response(status, headers, body)
    local set = headers["Set-Cookie"] or headers["set-cookie"]
    if set then
      if string.find(string.lower(set), "max-age=0", 1, true) then
        cookie = nil
      else
        cookie = string.match(set, "^[^;]*")
      end
    end
  end
end

function done(summary, latency, requests)
  local quantiles = {}
  for step = 1, 999 do
    quantiles[#quantiles + 1] = string.format("%d", latency:percentile(step / 10))
  end
  quantiles[#quantiles + 1] = string.format("%d", latency.max)
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests": %d, "duration_s": %.6f, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "quantiles": [%s]}\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(quantiles, ", ")))
end
