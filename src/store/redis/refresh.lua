-- RefreshLock: extends the lease if the token holds the lock.
-- KEYS: data, meta, lock, queue, waiters (see the prelude)
-- ARGV: 1 token  2 lease ms
-- Returns {'OK', lease expires ms, 0, expired} or {'LOCK_LOST', 0, 0, expired}
local now = now_ms()
local t, expired = holder()
if t ~= ARGV[1] then return {'LOCK_LOST', 0, 0, expired} end
redis.call('PEXPIRE', L, tonumber(ARGV[2]))
return {'OK', now + tonumber(ARGV[2]), 0, expired}
