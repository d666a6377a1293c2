-- CheckRate: one GCRA step (see src/session/rate.rs, which this mirrors).
-- It uses nothing of the prelude: it touches no session key.
-- KEYS[1] the limit: '<prefix>:{<ns>/<id>}:r:<name>' (a session's, in its
--         hash tag) or '<prefix>:{<ns>}:r:<name>' (a namespace's); a string,
--         the theoretical arrival time in µs on this server's clock, PX the
--         time until it passes (after that it means nothing: a full burst)
-- ARGV: interval µs, burst, cost
-- Returns {1, remaining, reset after µs} when admitted (TAT moved on), or
-- {0, remaining, retry after µs} when refused (nothing written).
-- Integers of µs only, exact in a Lua number until 2^53 µs (the year 2255).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tolerance = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new = tat + cost * interval
local allow_at = new - tolerance
if allow_at > now then
  return {0, math.floor((tolerance - (tat - now)) / interval), allow_at - now}
end
-- Written as digits: Redis turns a Lua number into text with 14
-- significant digits, too few for 16 digits of µs.
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000))
return {1, math.floor((tolerance - (new - now)) / interval), new - now}
