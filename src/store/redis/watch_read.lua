-- WatchSession: a follower reads its session's log after its position, and
-- keeps the session watched.
-- KEYS: stream, marker (one hash tag)
-- ARGV: 1 the position read to (a stream id)  2 how long the marker lasts
--       unless kept (ms)  3 the stream's (ms)  4 most entries to read
--       5 the session's invalidation channel (the marker's value)
-- Returns {'OK', 0, 0, 0, entries after the position (XRANGE)}
--      or {'GAP', 0, 0, 0}: entries after it are gone (trimmed, or the
--         stream expired), so the follower needs a snapshot
local X, K = KEYS[1], KEYS[2]
redis.call('SET', K, ARGV[5], 'PX', ARGV[2])
-- Positions are entries of the stream (see watch_begin.lua): one gone was
-- trimmed, and entries after it may have been too.
if #redis.call('XRANGE', X, ARGV[1], ARGV[1]) == 0 then return {'GAP', 0, 0, 0} end
redis.call('PEXPIRE', X, ARGV[3])
return {'OK', 0, 0, 0, redis.call('XRANGE', X, '(' .. ARGV[1], '+', 'COUNT', ARGV[4])}
