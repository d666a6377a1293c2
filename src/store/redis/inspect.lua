-- InspectSession: what the store knows of one session, for operators.
-- KEYS: data, meta, lock, queue, waiters (see the prelude)
-- ARGV: none
-- Returns {'OK', now ms, 0, expired, lock, live waiters, queued at, data...}
--   lock: false when nobody holds it, else {instance, fencing token (digits),
--         lease ms left, granted at ms} where instance is the part of the
--         holder's token before its '-' ('' for a token without one); the
--         token itself never leaves the script
--   queued at: the 12 hex digits of the first live waiter's token that
--         tell when its LockSession began (ms, its instance's clock); ''
--         when nobody waits or the token has none
--   data: the data hash as HGETALL returns it (empty if none)
-- Writes nothing but what `holder` does (a lease found run out).
local now = now_ms()
local t, expired = holder()
local lock = false
if t then
  local l = redis.call('HMGET', L, 'f', 's')
  lock = {string.match(t, '^(%x+)%-') or '', l[1] or '0', lease_end(now) - now, l[2] or '0'}
end
local waiters, queued = 0, ''
for _, token in ipairs(redis.call('LRANGE', Q, 0, -1)) do
  local rec = redis.call('HGET', W, token)
  if rec then
    local a = string.find(rec, ' ', 1, true)
    if a and tonumber(string.sub(rec, 1, a - 1)) >= now then
      if waiters == 0 then
        queued = string.match(token, '^%x+%-(' .. string.rep('%x', 12) .. ')') or ''
      end
      waiters = waiters + 1
    end
  end
end
local reply = {'OK', now, 0, expired, lock, waiters, queued}
for _, v in ipairs(redis.call('HGETALL', D)) do reply[#reply + 1] = v end
return reply
