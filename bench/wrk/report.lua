-- wrk script shared by every load in bench/run: sets the method and headers from the
-- environment (wrk passes no arguments to a script's setup for a single request) and prints a
-- machine-readable summary at the end, so the harness never parses wrk's human output.
--
--   WRK_METHOD   GET (default) or HEAD
--   WRK_ACCEPT   an Accept header (manifests are negotiated on it)
wrk.method = os.getenv("WRK_METHOD") or "GET"
local accept = os.getenv("WRK_ACCEPT")
if accept and accept ~= "" then
  wrk.headers["Accept"] = accept
end

function done(summary, latency, requests)
  local e = summary.errors
  -- One line, prefixed so the harness finds it among wrk's own output. Latencies are in
  -- microseconds, the duration too; bytes counts every byte read, including the part of a
  -- response still arriving when the duration ended (what throughput needs).
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
