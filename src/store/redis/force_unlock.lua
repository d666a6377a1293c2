-- ForceUnlock: releases the lock whoever holds it, and bumps the fencing
-- token (as a grant would: above the high-water mark and the clock's
-- microseconds), so that the old holder's token is refused (LOCK_LOST) and
-- any fence given from now on is above the old holder's. The first live
-- waiter is handed the lock or woken, as on an unlock.
-- KEYS: data, meta, lock, queue, waiters (see the prelude)
-- ARGV: 1 this instance's wake channel
-- Returns {'OK', released holder's fencing token, 0, expired, release's answer}
--      or {'NOT_HELD', 0, 0, expired}
local now = now_ms()
local t, expired = holder()
if not t then return {'NOT_HELD', 0, 0, expired} end
local old = tonumber(redis.call('HGET', L, 'f') or '0')
local fence = tonumber(redis.call('HGET', M, 'f') or '0') + 1
local floor = now_us()
if fence < floor then fence = floor end
redis.call('HSET', M, 'f', string.format('%.0f', fence))
watch_lock_end('o')
return {'OK', old, 0, expired, release(now, ARGV[1])}
