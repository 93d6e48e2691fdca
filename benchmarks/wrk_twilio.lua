-- wrk script: replays pre-signed Twilio voice webhooks of distinct calls.
--
--   wrk -t1 -c50 -d20s -s wrk_twilio.lua http://127.0.0.1:PORT -- FILE START BUDGET MARKER N READY PREBUILD
--
-- FILE: one "sid caller called signature" line per entry (benchmarks/workload.py);
-- this script rebuilds the exact signed request, in init() for the first PREBUILD
-- entries of its thread (default and at most PREBUILT) (a request then costs wrk a quarter less CPU: ~32 instead of
-- ~42 µs at 4,500 requests/s, CPU that the service shares in the scaling run), on
-- the fly for any beyond. READY (optional): a file written once init() is done,
-- just before wrk starts its clock (the harness measures CPU from then).
-- Thread k of n sends entries
-- START+k, START+k+n, … (cycling if the file runs out). BUDGET > 0: each thread
-- stops after sending BUDGET/n requests: the first to get there writes MARKER (the
-- harness then ends wrk with SIGINT). done() prints one JSON line prefixed "WRK_JSON ".

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- Must match workload._BODY.
local ACCOUNT = "AC" .. string.rep("0b", 16)
local B1 = "AccountSid=" .. ACCOUNT .. "&ApiVersion=2010-04-01&CallSid="
local B2 = "&CallStatus=ringing&Called="
local B3 = "&CalledCity=&CalledCountry=FR&CalledState=&CalledZip=&Caller="
local B4 = "&CallerCity=&CallerCountry=FR&CallerState=&CallerZip=&Direction=inbound&From="
local B5 = "&FromCity=&FromCountry=FR&FromState=&FromZip=&To="
local B6 = "&ToCity=&ToCountry=FR&ToState=&ToZip="

local lines = {}
local count = 0
local pos = 1
local budget = 0
local marker = nil
sent = 0
local head = nil
-- ~800 bytes each: a saturated 20 s run of the bare endpoint sends ~280,000.
local PREBUILT = 300000
local built = {}

local function build(line)
   local sid, frm, to, sig = line:match("^(%S+) %+(%S+) %+(%S+) (%S+)$")
   local body = B1 .. sid .. B2 .. "%2B" .. to .. B3 .. "%2B" .. frm .. B4 .. "%2B" .. frm ..
      B5 .. "%2B" .. to .. B6
   return head .. sig .. "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
end

function init(args)
   local path = args[1]
   local start = tonumber(args[2] or "0")
   local total_budget = tonumber(args[3] or "0")
   marker = args[4]
   local n = tonumber(args[5] or "1")
   local k = id or 0
   local all = {}
   for line in io.lines(path) do
      all[#all + 1] = line
   end
   -- A START past the file's end cycles too (a --quick run's few entries).
   if #all > 0 then start = start % #all end
   for i = start + k + 1, #all, n do
      count = count + 1
      lines[count] = all[i]
   end
   if total_budget > 0 then
      budget = math.ceil(total_budget / n)
   end
   head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
      "\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: "
   local prebuild = math.min(tonumber(args[7] or "") or PREBUILT, PREBUILT)
   for j = 1, math.min(count, prebuild) do
      built[j] = build(lines[j])
   end
   local ready = args[6]
   if ready and ready ~= "" and k == n - 1 then  -- the last thread's init: wrk starts next
      local f = io.open(ready, "w")
      if f then f:write("ready\n"); f:close() end
   end
end

function request()
   local req = built[pos] or build(lines[pos])
   pos = pos + 1
   if pos > count then pos = 1 end
   sent = sent + 1
   if budget > 0 and sent >= budget then
      -- Budget spent: tell the harness (it ends wrk with SIGINT). Counted on requests
      -- sent, not responses: a response() callback makes wrk hand every response's
      -- headers and body to Lua, which cost more CPU than the request itself.
      if marker then
         local f = io.open(marker, "w")
         if f then f:write("done\n"); f:close() end
      end
      budget = 0
   end
   return req
end

function done(summary, latency, requests)
   local sent_total = 0
   for _, t in ipairs(threads) do
      sent_total = sent_total + (t:get("sent") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "sent": %d, ' ..
      '"bad_status": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
      '"status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p99": %d, ' ..
      '"p999": %d, "max": %d, "mean": %.1f}}\n',
      -- bad_status: wrk's own count of non-2xx/3xx responses (errors.status).
      summary.requests, summary.duration, summary.bytes, sent_total, e.status,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
      latency.max, latency.mean))
end
