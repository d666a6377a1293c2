-- WatchSession's log (see src/store/redis/watch.rs), first in the library
-- (after the lines that set PUBLISH and declare KEYS and ARGV: library.rs).
-- While a session is watched (its marker key exists: instances with
-- watchers of it keep it, PX), the scripts append what they do to it to a
-- capped stream, and announce it on the session's invalidation channel
-- (the marker's value: see channels.rs) so that the followers on every
-- instance read it. Unwatched, a script pays one GET, at the first step it
-- would log, and nothing else.
--   stream  <prefix>:{<ns>/<id>}:x   entries: k (kind) and its fields:
--           'c' a write: v (version), n ('1': it created the session),
--               r ('1': replace), e (expires ms), then 'f:<name>' value for
--               each field set and 'x:<name>' '' for each name deleted
--           'g' a write too large to log (v: more than 16 KiB of values, or
--               of arguments): followers take a snapshot
--           'd' a delete: v (the version deleted)
--           'a' a grant: f (fence), e (the lease's end, ms)
--           'r' a release, 'o' a forced release: f (the holder's fence)
--           'b' a follower began here (watch_begin.lua)
--   marker  <prefix>:{<ns>/<id>}:k   the session's invalidation channel
-- Both are declared, KEYS[6] and KEYS[7] of every script that logs (see
-- keys.rs): the data key's hash tag, so the same Cluster slot, and a key a
-- script reaches without declaring it fails while its slot migrates.
-- Filled in when first needed: a call that logs nothing pays nothing more.
-- Emptied by the prelude's `begin` at the start of every call.
local WATCH

-- Whether the session is watched (read once per script).
local function watch_on()
  if WATCH.on == nil then
    WATCH.channel = redis.call('GET', KEYS[6])
    WATCH.on = WATCH.channel ~= false
  end
  return WATCH.on
end
-- Entries kept (about: trimmed by whole stream nodes), and how long the
-- stream outlives its last entry or keep (ms).
local WATCH_LEN, WATCH_KEEP_MS, WATCH_VALUE_BYTES = 1024, 60000, 16384

-- Appends an entry {k, kind, fields...} while the session is watched.
local function watch_add(entry)
  if not watch_on() then return end
  local x = KEYS[7]
  redis.call('XADD', x, 'MAXLEN', '~', WATCH_LEN, '*', unpack(entry))
  redis.call('PEXPIRE', x, WATCH_KEEP_MS)
  if not WATCH.woken then
    WATCH.woken = true
    local v = redis.call('HGET', KEYS[2], 'v') or '0'
    local subject = string.match(KEYS[1], '{([^{}]*)}:d$') or ''
    redis.call(PUBLISH, WATCH.channel, v .. ' ' .. subject)
  end
end

-- A write: `h` holds its 'f:<name>', value pairs first (`nh` items); the
-- names deleted are ARGV[first_del..].
local function watch_change(version, created, replaced, expires, h, nh, first_del)
  if not watch_on() then return end
  local flag = function(b) if b then return '1' end return '0' end
  local e = {'k', 'c', 'v', version, 'n', flag(created), 'r', flag(replaced), 'e', expires}
  -- A write whose values would make the log large, or beyond Lua's unpack
  -- limit, is logged as a gap.
  local bytes = 0
  for j = 2, nh, 2 do bytes = bytes + #h[j] end
  if bytes > WATCH_VALUE_BYTES or nh + 2 * (#ARGV - first_del + 1) > 7000 then
    e = {'k', 'g', 'v', version}
  else
    for j = 1, nh do e[#e + 1] = h[j] end
    for j = first_del, #ARGV do
      e[#e + 1] = 'x:' .. ARGV[j]
      e[#e + 1] = ''
    end
  end
  watch_add(e)
end

-- The end of a held lock ('r' released, 'o' forced), logged once per script
-- and read from the lock only while watched.
local function watch_lock_end(kind)
  if WATCH.ended then return end
  WATCH.ended = true
  if not watch_on() then return end
  local f = redis.call('HGET', KEYS[3], 'f')
  if f then watch_add({'k', kind, 'f', f}) end
end
