-- Shared by every function of the library (see library.rs, which puts
-- watch.lua before it and idempotency.lua and ops.lua after it). Each
-- function gets the seven keys of one session, all with the same hash tag,
-- so they live in one Cluster slot:
--   KEYS[1] data    hash: 'f:<name>' -> value, plus v (version), c/u/e
--                   (created/updated/expires ms), k (field count), n (bytes);
--                   PX the idle TTL, and never less than a lock's lease
--   KEYS[2] meta    hash: v (highest version ever given), f (highest fencing
--                   token ever given), h (token of the holder, while held);
--                   no TTL once a version was given, so versions never go
--                   back; the meta of an id never written expires after its
--                   lock (see meta_lasts)
--   KEYS[3] lock    hash: t (holder's token), f (its fencing token), c (the
--                   incarnation it was granted on: the data's c, '0' for
--                   none), s (granted at, ms), e (the lease's end, ms:
--                   what the holder was told); expires at e
--   KEYS[4] queue   list of waiting tokens, oldest first
--   KEYS[5] waiters hash: token -> '<alive-until ms> <lease ms> <wake channel>',
--                   or SUPERSEDED for a waiter a newer one of its burst
--                   superseded (out of the queue; its next attempt reads
--                   and removes the mark); and the session's *burst* (its
--                   newest LATEST_WINS or DEBOUNCE waiter, see lock.lua)
--                   under names that begin with '!', which no token does:
--                   !t its token, !d its quiet period ms (0: LATEST_WINS),
--                   !j when it joined (ms), !o its own payload, and the
--                   payloads it carries: !c<i> for i in !h..!n (oldest
--                   first), !b their bytes, !x how many were dropped; and
--                   !i<token> for a waiter with an idempotency key
--   KEYS[6] watch marker, KEYS[7] watch log: WatchSession's (watch.lua)
-- PUBLISH (a line library.rs puts before this one) is the command the
-- channels in the arguments and in the waiters' entries are published
-- with: 'PUBLISH' on one server, 'SPUBLISH' on a cluster, where every
-- channel a script is given lives in its session's slot (see channels.rs).
-- Every reply is an array whose 4th element is 1 when this call found that a
-- lease had run out since the lock was last touched (for the expiry counter).
-- Scripts that release the lock add a 5th: what `release` returned.
-- The library's code runs once, when it is loaded; these are set afresh
-- by `begin` at the start of every call (Redis runs one call at a time).
local D, M, L, Q, W
-- Also per call: the clock's microseconds at the call's TIME, the lock's c
-- as `holder` read it, and the data's header (`data_head`).
local NOW_US, LOCK_C, HEAD
-- A superseded waiter's mark in the waiters hash.
local SUPERSEDED = 'S'

-- The decimal text of an integral number, for a command's argument: Redis
-- turns a Lua number given to redis.call into text with printf's %.17g,
-- which costs a timestamp about ten times as much (bignum digits).
local function int(n)
  return string.format('%d', n)
end

-- Milliseconds on the Redis server's clock: the only clock leases use.
local function now_ms()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  NOW_US = s * 1000000 + us
  return s * 1000 + math.floor(us / 1000)
end

-- Microseconds on the same clock (exact in a Lua number until 2255): the
-- floor of fencing tokens. Grants come far less often than one a
-- microsecond, so the high-water mark never runs ahead of it, and a fence
-- given after a restart is above every fence given before it. Read with
-- the call's milliseconds (`now_ms`): one TIME a call.
local function now_us()
  if not NOW_US then now_ms() end
  return NOW_US
end

-- The holder's token (or false), and whether a lease ran out unseen.
local function holder()
  local l = redis.call('HMGET', L, 't', 'c')
  LOCK_C = l[2]
  if l[1] then return l[1], 0 end
  if redis.call('HDEL', M, 'h') == 1 then return false, 1 end
  return false, 0
end

-- The data's v, k, n and c (version, field count, bytes, created), read
-- once a call: only before the call writes the data.
local function data_head()
  if not HEAD then HEAD = redis.call('HMGET', D, 'v', 'k', 'n', 'c') end
  return HEAD
end

-- The first waiter still alive, with its wake channel and lease; drops dead
-- ones.
local function live_head(now)
  while true do
    local head = redis.call('LINDEX', Q, 0)
    if not head then return nil, nil, nil end
    local rec = redis.call('HGET', W, head)
    if rec then
      local a = string.find(rec, ' ', 1, true)
      local b = string.find(rec, ' ', a + 1, true)
      if tonumber(string.sub(rec, 1, a - 1)) >= now then
        return head, string.sub(rec, b + 1), tonumber(string.sub(rec, a + 1, b - 1))
      end
    end
    redis.call('LPOP', Q)
    redis.call('HDEL', W, head)
  end
end

-- Ends the session's burst: its waiter and the payloads it carries.
local function burst_clear()
  local c = redis.call('HMGET', W, '!h', '!n')
  for i = tonumber(c[1] or '1'), tonumber(c[2] or '0') do
    redis.call('HDEL', W, '!c' .. i)
  end
  redis.call('HDEL', W, '!t', '!d', '!j', '!o', '!h', '!n', '!b', '!x')
end

-- How long the meta of an id never written outlives its last lease (see
-- meta_lasts): a margin for the clock stepping back a little, and the time
-- within which a lease that ran out unseen is still counted by the next call
-- (holder).
local META_GRACE_MS = 2000

-- Keeps the data alive at least `ms` more (a lock's lease), and says so in
-- its e: idle expiry never takes a session from under its holder.
local function keep_data(now, ms)
  local ttl = redis.call('PTTL', D)
  if ttl >= 0 and ttl < ms then
    redis.call('PEXPIRE', D, int(ms))
    redis.call('HSET', D, 'e', int(now + ms))
  end
end

-- The meta of an id never written (no version given) holds only the fence
-- high-water mark and the holder: it lasts while a lock may be held (`ms`
-- more), then goes, so locking ids that are never written leaves nothing
-- behind. It lasts at least until the clock passes its high-water mark, and
-- `take` floors fences by the clock, so a fence given after it is gone is
-- still above every fence given before. A write PERSISTs it. `m`: its v
-- and f if the caller has them, else read here.
local function meta_lasts(now, ms, m)
  m = m or redis.call('HMGET', M, 'v', 'f')
  if tonumber(m[1] or '0') > 0 or not m[2] then return end
  local ahead = math.max(math.ceil(tonumber(m[2]) / 1000) - now, 0)
  redis.call('PEXPIRE', M, int(ahead + ms + META_GRACE_MS))
end

-- When the holder's lease ends (ms), as it was told; a lock granted
-- before the lock kept its end (no `e`) reads it from the key's TTL.
local function lease_end(now)
  local e = tonumber(redis.call('HGET', L, 'e') or '')
  if e then return e end
  return now + redis.call('PTTL', L)
end

-- Gives the lock to `token` for `lease` ms; returns its fencing token: above
-- the high-water mark, and never below the clock's microseconds, so that a meta lost
-- (expired, flushed, a restart without persistence) never makes a fence go
-- back. The lock records the incarnation it is granted on (check_guards).
local function take(token, lease, now)
  local m = redis.call('HMGET', M, 'v', 'f')
  local fence = tonumber(m[2] or '0') + 1
  local floor = now_us()
  if fence < floor then fence = floor end
  -- Written as digits: Redis turns a Lua number into text with 14
  -- significant digits, too few for a fence of 16.
  local digits = string.format('%.0f', fence)
  local ends = int(now + lease)
  redis.call('HSET', M, 'f', digits, 'h', token)
  -- With when it was granted (InspectSession) and when its lease ends, as
  -- the holder is told: a later read of PTTL, off the clock of another
  -- command, could say a millisecond more or less.
  redis.call('HSET', L, 't', token, 'f', digits, 'c', redis.call('HGET', D, 'c') or '0',
    's', int(now), 'e', ends)
  redis.call('PEXPIREAT', L, ends)
  watch_add({'k', 'a', 'f', digits, 'e', ends})
  keep_data(now, lease)
  meta_lasts(now, lease, {m[1], digits})
  return fence
end

-- Releases the lock and passes it on to the first live waiter. A waiter of
-- the calling instance (wake channel `mine`) is handed the lock here and now:
-- returns {token, fencing token, lease expires ms, data...} (data as HGETALL
-- gives it), and the calling instance gives it to that waiter with no
-- further round trip. Any other waiter, the burst's waiter (whose grant
-- carries payloads and may wait out a quiet period) and a waiter with an
-- idempotency key (whose grant is recorded by lock.lua) is woken over
-- pub/sub and takes the lock itself: returns {token}. Nobody waiting:
-- false. Unless the lock was handed on here, the meta of an id never
-- written begins to expire (`written`: this call gave it a version, so it
-- lasts).
local function release(now, mine, written)
  watch_lock_end('r')
  redis.call('DEL', L)
  redis.call('HDEL', M, 'h')
  local head, channel, lease = live_head(now)
  if not head then
    if not written then meta_lasts(now, 0) end
    return false
  end
  if channel ~= mine or redis.call('HGET', W, '!t') == head
      or redis.call('HEXISTS', W, '!i' .. head) == 1 then
    if not written then meta_lasts(now, 0) end
    redis.call(PUBLISH, channel, head)
    return {head}
  end
  redis.call('LPOP', Q)
  redis.call('HDEL', W, head)
  local handed = {head, take(head, lease, now), now + lease}
  for _, v in ipairs(redis.call('HGETALL', D)) do handed[#handed + 1] = v end
  return handed
end

-- Ends the grant of a holder whose session changed incarnation behind its
-- back (see check_guards): the lock is released and the first live waiter,
-- of whichever instance, woken to take it.
local function revoke(now)
  watch_lock_end('r')
  redis.call('DEL', L)
  redis.call('HDEL', M, 'h')
  meta_lasts(now, 0)
  local head, channel = live_head(now)
  if head then redis.call(PUBLISH, channel, head) end
end

-- Whether the holder's grant still stands on the session it was granted on.
-- The data can go, or be replaced, behind a holder's back only by Redis
-- (eviction under maxmemory, a key deleted or restored by hand): its own
-- writes keep the lock's c in step, and nobody else can write. A write
-- would then merge into a session its holder never read, so the grant is
-- over: revoked, and the caller told LOCK_LOST, which says what to do (lock
-- again, which reads the session afresh). A lock granted before c was
-- recorded has none and passes.
local function same_incarnation(now)
  local c = LOCK_C
  if not c or c == (data_head()[4] or '0') then return true end
  revoke(now)
  return false
end

-- The lock and version guards of a write; nil when they pass. The only
-- write before a refusal is a revoked grant (see same_incarnation).
local function check_guards(now, t, token, expected, expired)
  if token ~= '' then
    if t ~= token or not same_incarnation(now) then return {'LOCK_LOST', 0, 0, expired} end
  elseif t then
    return {'LOCK_HELD', 0, 0, expired}
  end
  if expected ~= '' then
    local cur = tonumber(data_head()[1] or '0')
    if cur ~= tonumber(expected) then return {'VERSION_MISMATCH', cur, 0, expired} end
  end
  return nil
end

-- `redis.call(cmd, key, items...)`, in calls of at most 1000 items (Lua's
-- unpack has a limit); an even chunk size keeps name/value pairs together.
local function in_chunks(cmd, key, items)
  for i = 1, #items, 1000 do
    redis.call(cmd, key, unpack(items, i, math.min(i + 999, #items)))
  end
end

-- Per-namespace quotas. Only while one is set does redis.rs pass the write
-- scripts (update, delete) three more keys, last, and two more arguments,
-- last; else QUOTA is nil and every quota_* function returns at once,
-- running no command. The keys are the namespace's, not the session's:
-- another Cluster slot, so quotas need a standalone Redis. The write
-- scripts have 7 keys, 8 with an idempotency record (KEYS[8], see
-- idempotency.lua), 10 or 11 with quotas:
--   KEYS[#KEYS-2] index  zset: data key -> its expiry ms when last written (a
--                  hint: the data's own PTTL decides, see quota_reap)
--   KEYS[#KEYS-1] sizes  hash: data key -> its size as counted
--   KEYS[#KEYS]   usage  hash: s (sessions counted), b (their bytes)
--   the last two ARGV: max sessions, max bytes (0: none); taken off ARGV
--   here, so each script reads its own arguments as its header says.
local QI, QS, QU, QUOTA
-- Expired sessions a write looks at before its check, and at most how many
-- more before it refuses: bounded work, and expired sessions stop counting
-- without a scan.
local QUOTA_REAP, QUOTA_REAP_MORE = 8, 256

-- Stops counting up to `n` of the sessions whose indexed expiry passed:
-- those whose data is gone. One whose data lives on (a lock's lease pushed
-- its expiry, see keep_data) is indexed again at its real expiry. Returns
-- how many went.
local function quota_reap(now, n)
  local gone, bytes = 0, 0
  for _, k in ipairs(redis.call('ZRANGEBYSCORE', QI, '-inf', now, 'LIMIT', 0, n)) do
    local ttl = redis.call('PTTL', k)
    if ttl == -2 then
      gone = gone + 1
      bytes = bytes + tonumber(redis.call('HGET', QS, k) or '0')
      redis.call('HDEL', QS, k)
      redis.call('ZREM', QI, k)
    else
      if ttl < 0 then ttl = 3600000 end
      redis.call('ZADD', QI, now + ttl, k)
    end
  end
  if gone > 0 then
    redis.call('HINCRBY', QU, 's', -gone)
    redis.call('HINCRBY', QU, 'b', -bytes)
  end
  return gone
end

-- Decides a write that leaves this session with `size` bytes, as
-- Quotas::admit does (src/session/quotas.rs): nil when it passes (kept for
-- quota_apply), else the refusal {'QUOTA_EXCEEDED', quota, usage,
-- expired}. A write that grows no count always passes. Writes nothing but
-- the reaping of expired sessions.
local function quota_check(now, size, expired)
  if not QUOTA then return nil end
  quota_reap(now, QUOTA_REAP)
  while true do
    local u = redis.call('HMGET', QU, 's', 'b')
    local us, ub = tonumber(u[1] or '0'), tonumber(u[2] or '0')
    local old = redis.call('HGET', QS, D)
    local s, b = us, ub + size
    if old then b = b - tonumber(old) else s = s + 1 end
    local over
    if QUOTA.sessions > 0 and s > us and s > QUOTA.sessions then
      over = {'QUOTA_EXCEEDED', 'sessions', us, expired}
    elseif QUOTA.bytes > 0 and b > ub and b > QUOTA.bytes then
      over = {'QUOTA_EXCEEDED', 'bytes', ub, expired}
    end
    if not over then
      QUOTA.ds, QUOTA.db = s - us, b - ub
      return nil
    end
    if QUOTA.reaped or quota_reap(now, QUOTA_REAP_MORE) == 0 then return over end
    QUOTA.reaped = true
  end
end

-- Counts the write quota_check passed: this session, `size` bytes, expiring
-- at `expires`.
local function quota_apply(size, expires)
  if not QUOTA then return end
  redis.call('ZADD', QI, expires, D)
  redis.call('HSET', QS, D, size)
  if QUOTA.ds ~= 0 then redis.call('HINCRBY', QU, 's', QUOTA.ds) end
  if QUOTA.db ~= 0 then redis.call('HINCRBY', QU, 'b', QUOTA.db) end
end

-- Stops counting this session (a delete).
local function quota_forget()
  if not QUOTA then return end
  local old = redis.call('HGET', QS, D)
  if not old then return end
  redis.call('HDEL', QS, D)
  redis.call('ZREM', QI, D)
  redis.call('HINCRBY', QU, 's', -1)
  redis.call('HINCRBY', QU, 'b', -tonumber(old))
end

-- The idempotency record of a write (see idempotency.lua): KEYS[8] of a
-- write script given 8 keys, or 11 with the quota keys.
local I

-- Starts a call of any of the library's functions: its keys and arguments,
-- and everything above that is kept per call.
local function begin(keys, args)
  KEYS, ARGV = keys, args
  D, M, L, Q, W = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
  WATCH = {}
  NOW_US, LOCK_C, HEAD = nil, nil, nil
  I = nil
  if #KEYS == 8 or #KEYS == 11 then I = KEYS[8] end
  QI, QS, QU, QUOTA = nil, nil, nil, nil
  if #KEYS >= 10 then
    QI, QS, QU = KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]
    local n = #ARGV
    QUOTA = {sessions = tonumber(ARGV[n - 1]), bytes = tonumber(ARGV[n])}
    ARGV[n] = nil
    ARGV[n - 1] = nil
  end
end
