-- A waiter gives up (wait ran out, deadline passed, caller disconnected): it
-- leaves the queue (and ends the burst it was the waiter of), and if it was
-- granted the lock meanwhile (a reply nobody will read), the lock is
-- released at once and passed on.
-- KEYS: data, meta, lock, queue, waiters (see the prelude)
-- ARGV: 1 token  2 this instance's wake channel
-- Returns {'OK', 1 if it held the lock else 0, 0, expired, release's answer},
-- the 5th element only when it held the lock.
local now = now_ms()
local t, expired = holder()
redis.call('LREM', Q, 0, ARGV[1])
redis.call('HDEL', W, ARGV[1], '!i' .. ARGV[1])
-- The burst's payloads end with its waiter (see TurnPolicy in the proto).
if redis.call('HGET', W, '!t') == ARGV[1] then burst_clear() end
if t == ARGV[1] then
  return {'OK', 1, 0, expired, release(now, ARGV[2])}
end
if not t then
  -- It may have been the head that was just woken: wake the next one.
  local head, channel = live_head(now)
  if head then redis.call(PUBLISH, channel, head) end
end
return {'OK', 0, 0, expired}
