-- InspectSession: what the store knows of one session, for operators.
-- KEYS: data, meta, lock, queue, waiters (see the prelude)
-- ARGV: none
-- Returns {'OK', now ms, 0, expired, lock, live waiters, data...}
--   lock: false when nobody holds it, else {instance, fencing token (digits),
--         lease ms left, granted at ms} where instance is the part of the
--         holder's token before its '-' ('' for a token without one); the
--         token itself never leaves the script
--   data: the data hash as HGETALL returns it (empty if none)
-- Writes nothing but what `holder` does (a lease found run out).
local now = now_ms()
local t, expired = holder()
local lock = false
if t then
  local l = redis.call('HMGET', L, 'f', 's')
  lock = {string.match(t, '^(%x+)%-') or '', l[1] or '0', redis.call('PTTL', L), l[2] or '0'}
end
local waiters = 0
for _, token in ipairs(redis.call('LRANGE', Q, 0, -1)) do
  local rec = redis.call('HGET', W, token)
  if rec then
    local a = string.find(rec, ' ', 1, true)
    if a and tonumber(string.sub(rec, 1, a - 1)) >= now then waiters = waiters + 1 end
  end
end
local reply = {'OK', now, 0, expired, lock, waiters}
for _, v in ipairs(redis.call('HGETALL', D)) do reply[#reply + 1] = v end
return reply
