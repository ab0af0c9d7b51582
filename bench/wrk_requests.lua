-- wrk script of the serving benchmarks (bench/load.py): sends the requests of $WRK_REQUESTS in
-- turn, one a line as METHOD<tab>PATH<tab>BODY (BODY: JSON, or nothing), and prints one JSON
-- line of results when done.
local requests = {}
for line in io.lines(os.getenv("WRK_REQUESTS")) do
  local method, path, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
  if body == "" then
    requests[#requests + 1] = wrk.format(method, path)
  else
    requests[#requests + 1] = wrk.format(method, path, { ["Content-Type"] = "application/json" }, body)
  end
end
local i = 0

request = function()
  i = i % #requests + 1
  return requests[i]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "status_errors": %d, "socket_errors": %d, ' ..
    '"timeouts": %d, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    e.timeout, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
