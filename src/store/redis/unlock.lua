-- UnlockSession: releases the lock if the token holds it.
-- KEYS: data, meta, lock, queue, waiters (see the prelude)
-- ARGV: 1 token  2 this instance's wake channel
-- Returns {'OK', 0, 0, expired, release's answer} or {'LOCK_LOST', 0, 0, expired}
local now = now_ms()
local t, expired = holder()
if t ~= ARGV[1] then return {'LOCK_LOST', 0, 0, expired} end
return {'OK', 0, 0, expired, release(now, ARGV[2])}
