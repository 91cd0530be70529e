-- wrk script for benchmarks/run.py: one scenario against the mock or Prism.
--
-- Every request carries an X-Forwarded-For address from 198.18.0.0/15 (the range set
-- aside for benchmarks; only a header value, no traffic goes there), walked round-robin so
-- that each address comes back rarely: the mock's rate limiter sees every request, but
-- no address reaches the burst limit (3 per second) or the 100-per-minute window.
-- Settings come from the environment (run.py sets them):
--   BENCH_SCENARIO   a: GET {prefix}/users/me/sessions/me
--                    b: GET {prefix}/users/me/sessions?limit=50
--                    c: 3 of 4 as a, 1 of 4 POST {prefix}/login for an unknown user (404)
--   BENCH_PREFIX     "/api" for the mock, "" for Prism (which ignores a relative server URL)
--   BENCH_TOKEN      the Authorization header value (as is, no "Bearer ")
--   BENCH_ADDRESSES  how many distinct addresses to walk (at most 131072)
--   BENCH_OFFSET     where in the range to start (so that runs can use fresh addresses)
-- done() prints one line "BENCH_JSON {...}" with the counts and latency percentiles.

local prefix = os.getenv("BENCH_PREFIX") or "/api"
local token = os.getenv("BENCH_TOKEN") or ""
local scenario = os.getenv("BENCH_SCENARIO") or "a"
local pool = tonumber(os.getenv("BENCH_ADDRESSES") or "131072")
local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count - 1)
  table.insert(threads, thread)
end

function init(args)
  sent = 0
  answered = 0
  non2xx = 0
  status429 = 0
  status404 = 0
  -- Each thread walks its own residue class of the pool.
  step = tonumber(os.getenv("BENCH_THREADS") or "1")
  get_me = prefix .. "/users/me/sessions/me"
  get_list = prefix .. "/users/me/sessions?limit=50"
  login = prefix .. "/login"
end

local function address(n)
  local index = (offset + (n * step + thread_id) % pool) % 131072
  return string.format("198.%d.%d.%d", 18 + math.floor(index / 65536),
    math.floor(index / 256) % 256, index % 256)
end

function request()
  local headers = { ["X-Forwarded-For"] = address(sent) }
  sent = sent + 1
  if scenario == "c" and sent % 4 == 0 then
    headers["Content-Type"] = "application/json"
    -- Prism answers the first documented status unless asked; the mock ignores Prefer.
    headers["Prefer"] = "code=404"
    local body = string.format('{"username":"nobody-%d-%d","password":"wrong"}', thread_id, sent)
    return wrk.format("POST", login, headers, body)
  end
  headers["Authorization"] = token
  if scenario == "b" then
    return wrk.format("GET", get_list, headers)
  end
  return wrk.format("GET", get_me, headers)
end

function response(status, headers, body)
  answered = answered + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
  if status == 429 then
    status429 = status429 + 1
  elseif status == 404 then
    status404 = status404 + 1
  end
end

function done(summary, latency, requests)
  local non, r429, r404 = 0, 0, 0
  for _, thread in ipairs(threads) do
    non = non + thread:get("non2xx")
    r429 = r429 + thread:get("status429")
    r404 = r404 + thread:get("status404")
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"non2xx":%d,"status429":%d,"status404":%d,' ..
    '"socket_errors":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    non, r429, r404,
    errors.connect + errors.read + errors.write + errors.timeout))
end
