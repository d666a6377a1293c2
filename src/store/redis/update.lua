-- UpdateSession: guards, limits, write, version bump, optional release and
-- an invalidation message, in one atomic step.
-- KEYS: data, meta, lock, queue, waiters (see the prelude)
-- ARGV: 1 lock token ('' = none)   2 expected version ('' = no check)
--       3 release ('1'/'0')       4 replace ('1'/'0')     5 idle TTL ms
--       6 max fields              7 max session bytes     8 invalidation channel
--       9 invalidation subject    10 this instance's wake channel
--       11 number of fields set (S)
--       12 .. 11+2S: name, value pairs to set;  the rest: names to delete
--       (deduplicated, disjoint from the set names)
-- Returns {'OK', new version, expires ms, expired, release's answer or false}
--      or {'LOCK_LOST'|'LOCK_HELD', 0, 0, expired}
--      or {'VERSION_MISMATCH', current version, 0, expired}
--      or {'LIMIT_EXCEEDED', 'max_fields'|'max_session_bytes', value, expired}
local now = now_ms()
local t, expired = holder()
local refused = check_guards(t, ARGV[1], ARGV[2], expired)
if refused then return refused end

local replace = ARGV[4] == '1'
local nset = tonumber(ARGV[11])
local first_del = 12 + 2 * nset
local cur = tonumber(redis.call('HGET', D, 'v') or '0')
local count, bytes = 0, 0
if cur > 0 and not replace then
  count = tonumber(redis.call('HGET', D, 'k'))
  bytes = tonumber(redis.call('HGET', D, 'n'))
  for i = first_del, #ARGV do
    local f = 'f:' .. ARGV[i]
    if redis.call('HEXISTS', D, f) == 1 then
      count = count - 1
      bytes = bytes - #ARGV[i] - redis.call('HSTRLEN', D, f)
    end
  end
end
for i = 12, first_del - 1, 2 do
  local f = 'f:' .. ARGV[i]
  if cur > 0 and not replace and redis.call('HEXISTS', D, f) == 1 then
    bytes = bytes - #ARGV[i] - redis.call('HSTRLEN', D, f)
  else
    count = count + 1
  end
  bytes = bytes + #ARGV[i] + #ARGV[i + 1]
end
if count > tonumber(ARGV[6]) then return {'LIMIT_EXCEEDED', 'max_fields', count, expired} end
if bytes > tonumber(ARGV[7]) then return {'LIMIT_EXCEEDED', 'max_session_bytes', bytes, expired} end

local created = now
if cur > 0 then created = tonumber(redis.call('HGET', D, 'c')) end
if replace then redis.call('DEL', D) end
for i = first_del, #ARGV do redis.call('HDEL', D, 'f:' .. ARGV[i]) end
for i = 12, first_del - 1, 2 do redis.call('HSET', D, 'f:' .. ARGV[i], ARGV[i + 1]) end
-- Versions come from meta, which outlives the data: never reused.
local version = math.max(tonumber(redis.call('HGET', M, 'v') or '0'), cur) + 1
redis.call('HSET', M, 'v', version)
local ttl = tonumber(ARGV[5])
redis.call('HSET', D, 'v', version, 'c', created, 'u', now, 'e', now + ttl, 'k', count, 'n', bytes)
redis.call('PEXPIRE', D, ttl)
local woken = false
if ARGV[3] == '1' then woken = release(now, ARGV[10]) end
redis.call('PUBLISH', ARGV[8], version .. ' ' .. ARGV[9])
return {'OK', version, now + ttl, expired, woken}
