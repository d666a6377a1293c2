-- Idempotency keys (UpdateSession, DeleteSession), after the prelude.
-- I, KEYS[8] (set by the prelude's `begin`), only when the call has a key
-- (8 keys, or 11 with the quota keys after it: see the prelude): the
-- record of the first successful write under it,
-- '<prefix>:{<ns>/<id>}:i:<hex of the key's digest>' (the session's hash
-- tag: the same slot as its other keys): a hash of d (the request's
-- digest), v and e (the update's version and expiry), n and o1..on (its
-- ops' values) or x (the delete's version), PX the window.

-- The earlier write under the key: nil when none (or no key), false when it
-- was another request, else its record as HGETALL gives it.
local function earlier(digest)
  if not I then return nil end
  local d = redis.call('HGET', I, 'd')
  if not d then return nil end
  if d ~= digest then return false end
  return redis.call('HGETALL', I)
end

-- The field `name` of a record from `earlier`.
local function field_of(rec, name)
  for i = 1, #rec, 2 do
    if rec[i] == name then return rec[i + 1] end
  end
  return nil
end

-- Records the answer of a successful write: `pairs` (name, value, ...)
-- with the digest, for `window` ms.
local function remember(digest, window, pairs)
  if not I then return end
  redis.call('DEL', I)
  local rec = {'d', digest}
  for _, v in ipairs(pairs) do rec[#rec + 1] = v end
  in_chunks('HSET', I, rec)
  redis.call('PEXPIRE', I, window)
end

-- A repeat's release: the lock goes if the repeat asks for it and its token
-- holds it (its own attempt's grant), and is passed on as any release.
local function repeat_release(now, t, token, release_flag, mine)
  if release_flag == '1' and token ~= '' and t == token then return release(now, mine) end
  return false
end
