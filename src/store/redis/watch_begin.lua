-- WatchSession: a follower begins (see watch.rs). Marks the session watched
-- (the write scripts log it from now on, see watch.lua), and answers, in one
-- step, the session, its lock and its log so far, with the position of now.
-- KEYS: data, meta, lock, stream, marker (one hash tag)
-- ARGV: 1 how long the marker lasts unless kept (ms)  2 the stream's (ms)
--       3 the session's invalidation channel (the marker's value)
-- Returns {'OK', position of now (a stream id), 0, 0, lock fence or false,
--          lock end ms or false, the stream's entries (XRANGE), data...}
local D, L, X, K = KEYS[1], KEYS[3], KEYS[4], KEYS[5]
redis.call('SET', K, ARGV[3], 'PX', ARGV[1])
-- An entry of its own, so that the position is one the stream holds: a
-- later read that no longer finds it knows entries were trimmed.
local at = redis.call('XADD', X, 'MAXLEN', '~', 1024, '*', 'k', 'b')
redis.call('PEXPIRE', X, ARGV[2])
local lock = redis.call('HMGET', L, 'f', 'e')
local reply = {'OK', at, 0, 0, lock[1], lock[2], redis.call('XRANGE', X, '-', '+')}
for _, v in ipairs(redis.call('HGETALL', D)) do reply[#reply + 1] = v end
return reply
