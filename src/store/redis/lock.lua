-- LockSession, one attempt. Takes the lock if it is free, no live waiter
-- is ahead of this token and it is not waiting out a quiet period;
-- otherwise refuses ('try') or queues the token ('wait'; idempotent: a
-- queued token keeps its place and renews its alive time, which is how
-- waiters prove they are still there).
-- KEYS: data, meta, lock, queue, waiters, watch marker and stream (see the
--       prelude), and with an idempotency key KEYS[8], the record of the grant made under it:
--       '<prefix>:{<ns>/<id>}:il:<hex of the key's digest>', a hash of d
--       (the request's digest), t, f and e (the grant's token, fencing token
--       and lease end ms), x and n (the superseded payloads dropped and
--       kept) and p1..pn (those payloads), PX the window; a keyed waiter's queue entry is
--       marked '!i<token>' in the waiters hash, so that a releasing script
--       wakes it rather than hand it the lock (its own attempt records it)
-- ARGV: 1 token  2 lease ms  3 'try' | 'wait'  4 waiter alive ms
--       5 this instance's wake channel
--       6 '' or, on a waiter's first attempt with LATEST_WINS or DEBOUNCE,
--         its quiet period in ms (0 for LATEST_WINS): it joins the burst
--         (see the prelude) and supersedes the burst's waiter
--       7 its payload  8 the most bytes of payloads one grant carries
--       9 the request's digest ('' without a key)  10 the window ms
-- Returns {'GRANTED', fencing token, lease expires ms, expired, superseded,
--          data...}
--         (superseded: {dropped, payload...}, the payloads of the waiters
--         this grant superseded, oldest first, and how many older ones were
--         dropped; data: the data hash as HGETALL returns it; empty if
--         none; kept alive at least to the lease's end)
--      or {'LOCK_HELD', 0, 0, expired}
--      or {'QUEUED', ms until it may be granted: the lease's PTTL, or what
--          is left of its quiet period (-2: free now), 0, expired}
--      or {'SUPERSEDED', 0, 0, expired}: a newer waiter of the burst took
--          this token's turn (the mark is consumed)
--      or {'REPLAYED', fencing token, lease end ms, expired, token,
--          superseded, data...}: the grant made earlier under the key, with
--          the payloads it carried (this token leaves the queue); its lease
--          end is the holder's now if it still holds
--      or {'IDEMPOTENCY_KEY_REUSED', 0, 0, expired}: another request's key
local now = now_ms()
local token, lease = ARGV[1], tonumber(ARGV[2])
local I = KEYS[8]
local t, expired = holder()

local function granted(fence, expires, superseded)
  local reply = {'GRANTED', fence, expires, expired, superseded}
  for _, v in ipairs(redis.call('HGETALL', D)) do reply[#reply + 1] = v end
  return reply
end

-- Appends a payload to the burst's chain, dropping the oldest beyond `max`
-- bytes (as session/turn.rs's Chain::push).
local function chain_push(payload, max)
  local c = redis.call('HMGET', W, '!h', '!n', '!b', '!x')
  local h, n = tonumber(c[1] or '1'), tonumber(c[2] or '0') + 1
  local b, x = tonumber(c[3] or '0') + #payload, tonumber(c[4] or '0')
  redis.call('HSET', W, '!c' .. n, payload)
  while b > max and h <= n do
    b = b - redis.call('HSTRLEN', W, '!c' .. h)
    redis.call('HDEL', W, '!c' .. h)
    h, x = h + 1, x + 1
  end
  redis.call('HSET', W, '!h', h, '!n', n, '!b', b, '!x', x)
end

-- Makes `token` the burst's waiter. The burst's waiter still queued and
-- alive is superseded: marked, woken to learn it, and `token` takes its
-- place in the queue and its payloads, its own last. A burst whose waiter
-- left the queue ends with it: `token` starts a new one, at the back.
local function join_burst(record, debounce, payload, max)
  local b = redis.call('HMGET', W, '!t', '!o')
  local at = false
  if b[1] then
    local rec = redis.call('HGET', W, b[1])
    local a = rec and string.find(rec, ' ', 1, true)
    if a and tonumber(string.sub(rec, 1, a - 1)) >= now then
      at = redis.call('LPOS', Q, b[1])
    end
    if at then
      redis.call('HSET', W, b[1], SUPERSEDED)
      redis.call('HDEL', W, '!i' .. b[1])
      local c = string.find(rec, ' ', a + 1, true)
      redis.call(PUBLISH, string.sub(rec, c + 1), b[1])
      chain_push(b[2] or '', max)
    else
      burst_clear()
    end
  end
  if at then
    redis.call('LSET', Q, at, token)
  else
    redis.call('RPUSH', Q, token)
  end
  redis.call('HSET', W, token, record, '!t', token, '!d', debounce, '!j', now, '!o', payload)
end

-- What is left of `token`'s quiet period, if it is the burst's waiter (0:
-- none).
local function quiet_left()
  local b = redis.call('HMGET', W, '!t', '!d', '!j')
  if b[1] ~= token then return 0 end
  return math.max(tonumber(b[3]) + tonumber(b[2]) - now, 0)
end

-- The payloads `token` carries, as the reply has them; the burst ends with
-- its grant.
local function take_burst()
  if redis.call('HGET', W, '!t') ~= token then return {0} end
  local c = redis.call('HMGET', W, '!h', '!n', '!x')
  local out = {tonumber(c[3] or '0')}
  for i = tonumber(c[1] or '1'), tonumber(c[2] or '0') do
    out[#out + 1] = redis.call('HGET', W, '!c' .. i)
  end
  burst_clear()
  return out
end

local mine = redis.call('HGET', W, token)
if mine == SUPERSEDED then
  redis.call('HDEL', W, token)
  return {'SUPERSEDED', 0, 0, expired}
end
if t == token then
  -- Already ours: an earlier attempt was granted but its reply was lost.
  return granted(tonumber(redis.call('HGET', L, 'f')), lease_end(now), {0})
end
if I then
  local rec = redis.call('HMGET', I, 'd', 't', 'f', 'e', 'x', 'n')
  if rec[1] and rec[1] ~= ARGV[9] then return {'IDEMPOTENCY_KEY_REUSED', 0, 0, expired} end
  if rec[1] then
    if redis.call('HDEL', W, token) == 1 then redis.call('LREM', Q, 0, token) end
    redis.call('HDEL', W, '!i' .. token)
    local e = tonumber(rec[4])
    if t == rec[2] then e = lease_end(now) end
    local superseded = {tonumber(rec[5] or '0')}
    for i = 1, tonumber(rec[6] or '0') do
      superseded[i + 1] = redis.call('HGET', I, 'p' .. i) or ''
    end
    local reply = {'REPLAYED', tonumber(rec[3]), e, expired, rec[2], superseded}
    for _, v in ipairs(redis.call('HGETALL', D)) do reply[#reply + 1] = v end
    return reply
  end
end
local alive = tonumber(ARGV[4])
local record = (now + alive) .. ' ' .. lease .. ' ' .. ARGV[5]
if ARGV[3] == 'wait' and ARGV[6] ~= '' and not mine then
  join_burst(record, tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8]))
end
local quiet = 0
if not t then
  local head = live_head(now)
  if head == token then quiet = quiet_left() end
  if (head == nil or head == token) and quiet == 0 then
    if head == token then
      redis.call('LPOP', Q)
      redis.call('HDEL', W, token)
    end
    local superseded = take_burst()
    local fence = take(token, lease, now)
    if I then
      local rec = {'d', ARGV[9], 't', token, 'f', string.format('%.0f', fence),
        'e', int(now + lease), 'x', superseded[1], 'n', #superseded - 1}
      for i = 2, #superseded do
        rec[#rec + 1] = 'p' .. (i - 1)
        rec[#rec + 1] = superseded[i]
      end
      in_chunks('HSET', I, rec)
      redis.call('PEXPIRE', I, ARGV[10])
      redis.call('HDEL', W, '!i' .. token)
    end
    return granted(fence, now + lease, superseded)
  end
end
if ARGV[3] == 'try' then return {'LOCK_HELD', 0, 0, expired} end
if redis.call('HSET', W, token, record) == 1 then
  redis.call('RPUSH', Q, token)
end
if I then redis.call('HSET', W, '!i' .. token, 1) end
-- Forgotten by themselves once every waiter is gone.
redis.call('PEXPIRE', Q, 2 * alive)
redis.call('PEXPIRE', W, 2 * alive)
if quiet > 0 then return {'QUEUED', quiet, 0, expired} end
return {'QUEUED', redis.call('PTTL', L), 0, expired}
