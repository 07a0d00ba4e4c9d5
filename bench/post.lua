-- wrk script of the ingest measurement: send pre-signed webhooks from a file, each once.
--   wrk ... -s bench/post.lua <url> -- <requests file>
-- The file holds complete HTTP requests, each as "<length>\n<bytes>", signed just before the
-- run (Standard Webhooks: the ±300 s window holds). Threads take disjoint strides of it.

local requests_ = {}
local count = 0
local index = 0
local stride = 1
local threads = {}

function setup(thread)
  thread:set("thread_number", #threads)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while pos <= #data do
    local nl = data:find("\n", pos, true)
    local len = tonumber(data:sub(pos, nl - 1))
    count = count + 1
    requests_[count] = data:sub(nl + 1, nl + len)
    pos = nl + 1 + len
  end
  stride = tonumber(args[2] or "1")
  index = thread_number or 0
end

function request()
  local r = requests_[index % count + 1]
  index = index + stride
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
