-- DeleteSession: guards, delete, optional release, invalidation message.
-- KEYS: data, meta, lock, queue, waiters (see the prelude); then the
--       idempotency key's record when there is one (see idempotency.lua);
--       then, with quotas, the namespace's index, sizes and usage (the last
--       three: see the prelude)
-- ARGV: 1 lock token ('' = none)  2 expected version ('' = no check)
--       3 release ('1'/'0')      4 invalidation channel  5 invalidation subject
--       6 this instance's wake channel   7 the request's digest
--       8 the idempotency window ms
-- The idempotency key's record, when there is one: a repeat answers the first call's OK (and releases its own lock if asked and held),
-- or {'IDEMPOTENCY_KEY_REUSED', 0, 0, expired} (see idempotency.lua)
-- Returns {'OK', deleted version (0 if there was none), 0, expired, release's answer or false}, or a guard's refusal as in
-- update.lua. The invalidation carries the lowest version a re-created
-- session can have, so caches drop every older copy. The meta stays (a
-- session that had a version keeps its meta for good).
local now = now_ms()
local t, expired = holder()
local rec = earlier(ARGV[7])
if rec == false then return {'IDEMPOTENCY_KEY_REUSED', 0, 0, expired} end
if rec then
  local woken = repeat_release(now, t, ARGV[1], ARGV[3], ARGV[6])
  return {'OK', tonumber(field_of(rec, 'x')), 0, expired, woken}
end
local refused = check_guards(now, t, ARGV[1], ARGV[2], expired)
if refused then return refused end
quota_forget()
local cur = tonumber(data_head()[1] or '0')
if cur > 0 then
  redis.call('DEL', D)
  watch_add({'k', 'd', 'v', cur})
  redis.call(PUBLISH, ARGV[4], (cur + 1) .. ' ' .. ARGV[5])
end
remember(ARGV[7], ARGV[8], {'x', cur})
local woken = false
if ARGV[3] == '1' then
  woken = release(now, ARGV[6])
elseif ARGV[1] ~= '' and cur > 0 then
  -- The holder's own delete: its grant now stands on no session.
  redis.call('HSET', L, 'c', '0')
end
return {'OK', cur, 0, expired, woken}
