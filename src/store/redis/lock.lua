-- LockSession, one attempt. Takes the lock if it is free and no live waiter
-- is ahead of this token; otherwise refuses ('try') or queues the token
-- ('wait'; idempotent: a queued token keeps its place and renews its alive
-- time, which is how waiters prove they are still there).
-- KEYS: data, meta, lock, queue, waiters (see the prelude)
-- ARGV: 1 token  2 lease ms  3 'try' | 'wait'  4 waiter alive ms
--       5 this instance's wake channel
-- Returns {'GRANTED', fencing token, lease expires ms, expired, data...}
--         (data: the data hash as HGETALL returns it; empty if none; kept
--         alive at least to the lease's end)
--      or {'LOCK_HELD', 0, 0, expired}
--      or {'QUEUED', ms until the lease runs out (-2: free now), 0, expired}
local now = now_ms()
local token, lease = ARGV[1], tonumber(ARGV[2])
local t, expired = holder()

local function granted(fence, expires)
  local reply = {'GRANTED', fence, expires, expired}
  for _, v in ipairs(redis.call('HGETALL', D)) do reply[#reply + 1] = v end
  return reply
end

if t == token then
  -- Already ours: an earlier attempt was granted but its reply was lost.
  return granted(tonumber(redis.call('HGET', L, 'f')), lease_end(now))
end
if not t then
  local head = live_head(now)
  if head == nil or head == token then
    if head == token then
      redis.call('LPOP', Q)
      redis.call('HDEL', W, token)
    end
    return granted(take(token, lease, now), now + lease)
  end
end
if ARGV[3] == 'try' then return {'LOCK_HELD', 0, 0, expired} end
local alive = tonumber(ARGV[4])
if redis.call('HSET', W, token, (now + alive) .. ' ' .. lease .. ' ' .. ARGV[5]) == 1 then
  redis.call('RPUSH', Q, token)
end
-- Forgotten by themselves once every waiter is gone.
redis.call('PEXPIRE', Q, 2 * alive)
redis.call('PEXPIRE', W, 2 * alive)
return {'QUEUED', redis.call('PTTL', L), 0, expired}
