-- UpdateSession: guards, limits, write, version bump, optional release and
-- an invalidation message, in one atomic step.
-- KEYS: data, meta, lock, queue, waiters (see the prelude); then the
--       idempotency key's record when there is one (see idempotency.lua);
--       then, with quotas, the namespace's index, sizes and usage (the last
--       three: see the prelude)
-- ARGV: 1 lock token ('' = none)   2 expected version ('' = no check)
--       3 release ('1'/'0')       4 replace ('1'/'0')     5 idle TTL ms
--       6 max fields              7 max session bytes     8 invalidation channel
--       9 invalidation subject    10 this instance's wake channel
--       11 number of fields set (S)   12 number of ops (O)
--       13 max field bytes   14 the request's digest (idempotency)
--       15 the idempotency window ms
--       16 .. 15+2S: name, value pairs to set;  then O ops of 4 arguments:
--       kind ('i' increment, 'a' append, 's' set if absent), name, a, b (see
--       ops.lua's op_value); the rest: names to delete (deduplicated; the
--       names of sets, ops and deletes are disjoint)
-- Returns {'OK', new version, expires ms, expired, release's answer or false,
--          {the ops' new values, in order}}
--         (expires: the idle TTL from now, or the lease's end if later and
--         the holder keeps the lock)
--         A repeat under an idempotency key answers the first call's OK (and
--         releases its own lock if asked and held); under another request,
--         {'IDEMPOTENCY_KEY_REUSED', 0, 0, expired}.
--      or {'FIELD_NOT_INTEGER'|'INTEGER_OVERFLOW'|'FIELD_NOT_LIST', index of
--         the op (from 0), 0, expired}
--      or {'LOCK_LOST'|'LOCK_HELD', 0, 0, expired} (LOCK_LOST also when the
--         session changed incarnation since the grant: see the prelude)
--      or {'VERSION_MISMATCH', current version, 0, expired}
--      or {'LIMIT_EXCEEDED', 'max_fields'|'max_session_bytes', value, expired}
--      or {'QUOTA_EXCEEDED', 'sessions'|'bytes', namespace's usage, expired}
--         (only with the quota keys: see the prelude)
--      or {'LIMIT_EXCEEDED', 'max_field_bytes', value, expired, index of the op}
local now = now_ms()
local t, expired = holder()
local rec = earlier(ARGV[14])
if rec == false then return {'IDEMPOTENCY_KEY_REUSED', 0, 0, expired} end
if rec then
  local values = {}
  for i = 1, tonumber(field_of(rec, 'n')) do values[i] = field_of(rec, 'o' .. i) end
  local woken = repeat_release(now, t, ARGV[1], ARGV[3], ARGV[10])
  return {'OK', tonumber(field_of(rec, 'v')), tonumber(field_of(rec, 'e')), expired, woken, values}
end
local refused = check_guards(now, t, ARGV[1], ARGV[2], expired)
if refused then return refused end

local replace = ARGV[4] == '1'
local nset = tonumber(ARGV[11])
local first_op = 16 + 2 * nset
local first_del = first_op + 4 * tonumber(ARGV[12])
local d = data_head()
local cur = tonumber(d[1] or '0')
local merge = cur > 0 and not replace

-- The stored size of field `f` of the current data, or nil if it has none
-- (HEXISTS only to tell an empty value from a missing one).
local function stored(f)
  if not merge then return nil end
  local n = redis.call('HSTRLEN', D, f)
  if n > 0 or redis.call('HEXISTS', D, f) == 1 then return n end
  return nil
end

local count, bytes = 0, 0
if merge then count, bytes = tonumber(d[2]), tonumber(d[3]) end
local deleted = {}
for i = first_del, #ARGV do
  local f = 'f:' .. ARGV[i]
  local n = stored(f)
  if n then
    count = count - 1
    bytes = bytes - #ARGV[i] - n
    deleted[#deleted + 1] = f
  end
end
-- The data hash as it will be: fields set, then the bookkeeping.
local h = {}
for i = 16, first_op - 1, 2 do
  local f = 'f:' .. ARGV[i]
  local n = stored(f)
  if n then bytes = bytes - #ARGV[i] - n else count = count + 1 end
  bytes = bytes + #ARGV[i] + #ARGV[i + 1]
  h[#h + 1] = f
  h[#h + 1] = ARGV[i + 1]
end
-- The ops, from the fields' stored values (their names are in no set or
-- delete; with replace, every field starts absent).
local values = {}
for i = first_op, first_del - 1, 4 do
  local f = 'f:' .. ARGV[i + 1]
  local cur = nil
  if merge then cur = redis.call('HGET', D, f) or nil end
  local new, why = op_value(ARGV[i], cur, ARGV[i + 2], ARGV[i + 3])
  local index = (i - first_op) / 4
  if not new then return {why, index, 0, expired} end
  if #new > tonumber(ARGV[13]) then
    return {'LIMIT_EXCEEDED', 'max_field_bytes', #new, expired, index}
  end
  if cur then bytes = bytes - #cur else count = count + 1; bytes = bytes + #ARGV[i + 1] end
  bytes = bytes + #new
  h[#h + 1] = f
  h[#h + 1] = new
  values[#values + 1] = new
end
if count > tonumber(ARGV[6]) then return {'LIMIT_EXCEEDED', 'max_fields', count, expired} end
if bytes > tonumber(ARGV[7]) then return {'LIMIT_EXCEEDED', 'max_session_bytes', bytes, expired} end
refused = quota_check(now, bytes, expired)
if refused then return refused end

local created = now
if cur > 0 then created = tonumber(d[4]) end
if replace then redis.call('DEL', D) end
in_chunks('HDEL', D, deleted)
-- Versions come from meta, which outlives the data: never reused. Written
-- once, it never expires (see the prelude's meta_lasts).
local version = redis.call('HINCRBY', M, 'v', 1)
-- Its first version: a meta without one may have been expiring.
if version == 1 then redis.call('PERSIST', M) end
if version <= cur then
  version = cur + 1
  redis.call('HSET', M, 'v', version)
end
-- The idle TTL, but a holder that keeps the lock keeps its session too.
local holds = ARGV[1] ~= '' and ARGV[3] ~= '1'
local ttl = tonumber(ARGV[5])
if holds then ttl = math.max(ttl, redis.call('PTTL', L)) end
local i = #h
h[i + 1], h[i + 2], h[i + 3], h[i + 4], h[i + 5], h[i + 6] = 'v', int(version), 'c', int(created), 'u', int(now)
h[i + 7], h[i + 8], h[i + 9], h[i + 10], h[i + 11], h[i + 12] = 'e', int(now + ttl), 'k', int(count), 'n', int(bytes)
in_chunks('HSET', D, h)
redis.call('PEXPIRE', D, int(ttl))
quota_apply(bytes, now + ttl)
-- The holder's own (re-)create: its grant stands on this incarnation now.
if holds and cur == 0 then redis.call('HSET', L, 'c', created) end
watch_change(version, cur == 0, replace, now + ttl, h, i, first_del)
local answer = {'v', version, 'e', now + ttl, 'n', #values}
for i, v in ipairs(values) do
  answer[#answer + 1] = 'o' .. i
  answer[#answer + 1] = v
end
remember(ARGV[14], ARGV[15], answer)
local woken = false
if ARGV[3] == '1' then woken = release(now, ARGV[10], true) end
redis.call(PUBLISH, ARGV[8], int(version) .. ' ' .. ARGV[9])
return {'OK', version, now + ttl, expired, woken, values}
