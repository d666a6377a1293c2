-- RefreshLock: extends the lease if the token holds the lock, and the data's
-- life with it (idle expiry never takes a session from under its holder).
-- KEYS: data, meta, lock, queue, waiters (see the prelude)
-- ARGV: 1 token  2 lease ms
-- Returns {'OK', lease expires ms, 0, expired} or {'LOCK_LOST', 0, 0, expired}
-- (also when the session changed incarnation behind the holder's back: the
-- grant is then revoked, see the prelude's same_incarnation)
local now = now_ms()
local t, expired = holder()
if t ~= ARGV[1] or not same_incarnation(now) then return {'LOCK_LOST', 0, 0, expired} end
local lease = tonumber(ARGV[2])
redis.call('HSET', L, 'e', int(now + lease))
redis.call('PEXPIREAT', L, int(now + lease))
keep_data(now, lease)
meta_lasts(now, lease)
return {'OK', now + lease, 0, expired}
