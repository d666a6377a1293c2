-- Field operations (UpdateSession's ops), after the prelude. The same rules
-- as src/session/ops.rs, which the embedded store runs: a refusal here must
-- be a refusal there.
--
-- Integers: an optional '-' and 1 to 19 digits, within the signed 64-bit
-- range. A Lua number (a double) is exact only to 2^53, so a value is kept
-- as its sign and two exact parts: magnitude = hi * 1e9 + lo.
local E9 = 1000000000
-- The magnitudes of i64::MAX and i64::MIN, split the same way.
local MAX_HI, MAX_LO = 9223372036, 854775807

-- {sign (1 or -1), hi, lo} of decimal text, or nil if it is not an integer
-- in range.
local function int_parse(s)
  if #s == 0 or #s > 20 then return nil end
  local sign, digits = 1, s
  if string.sub(s, 1, 1) == '-' then sign, digits = -1, string.sub(s, 2) end
  if #digits == 0 or #digits > 19 or string.find(digits, '^%d+$') == nil then return nil end
  local lo = tonumber(string.sub(digits, -9))
  local hi = 0
  if #digits > 9 then hi = tonumber(string.sub(digits, 1, -10)) end
  local max_lo = MAX_LO
  if sign < 0 then max_lo = MAX_LO + 1 end
  if hi > MAX_HI or (hi == MAX_HI and lo > max_lo) then return nil end
  return {sign, hi, lo}
end

-- The decimal text of a + b, or nil when it leaves the signed 64-bit range.
local function int_add(a, b)
  local hi = a[1] * a[2] + b[1] * b[2]
  local lo = a[1] * a[3] + b[1] * b[3]
  if lo >= E9 then lo, hi = lo - E9, hi + 1 elseif lo <= -E9 then lo, hi = lo + E9, hi - 1 end
  if hi > 0 and lo < 0 then lo, hi = lo + E9, hi - 1 elseif hi < 0 and lo > 0 then lo, hi = lo - E9, hi + 1 end
  local neg = hi < 0 or (hi == 0 and lo < 0)
  hi, lo = math.abs(hi), math.abs(lo)
  local max_lo = MAX_LO
  if neg then max_lo = MAX_LO + 1 end
  if hi > MAX_HI or (hi == MAX_HI and lo > max_lo) then return nil end
  local sign = ''
  if neg then sign = '-' end
  if hi > 0 then return sign .. string.format('%d%09d', hi, lo) end
  return sign .. string.format('%d', lo)
end

-- Lists: a sessiond.v1.FieldList, protobuf-encoded (per entry 0x0A, a varint
-- length of at most 5 bytes, the bytes). The offsets at which the entries of
-- `s` start, or nil if it is not such a list. O(entries).
local function list_starts(s)
  local starts, pos, n = {}, 1, #s
  while pos <= n do
    starts[#starts + 1] = pos
    if string.byte(s, pos) ~= 10 then return nil end
    local len, mul, i = 0, 1, pos + 1
    while true do
      if i > n or i > pos + 5 then return nil end
      local b = string.byte(s, i)
      len = len + (b % 128) * mul
      mul = mul * 128
      i = i + 1
      if b < 128 then break end
    end
    pos = i + len
  end
  if pos ~= n + 1 then return nil end
  return starts
end

-- `entry` as a list element.
local function list_entry(entry)
  local n, head = #entry, {}
  while n >= 128 do
    head[#head + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  head[#head + 1] = string.char(n)
  return '\10' .. table.concat(head) .. entry
end

-- The list `s` (nil: empty) with `entry` appended, keeping the last `keep`
-- entries; nil if `s` is not a list.
local function list_append(s, entry, keep)
  s = s or ''
  local starts = list_starts(s)
  if not starts then return nil end
  local drop = #starts - (keep - 1)
  local from = 1
  if drop > 0 then from = starts[drop + 1] or (#s + 1) end
  return string.sub(s, from) .. list_entry(entry)
end

-- The new value of a field under op `kind` ('i' increment by the decimal
-- `a`, 'a' append `a` keeping `b` entries, 's' set `a` if absent) from its
-- value `cur` (nil: absent); or nil and the refusal's status.
local function op_value(kind, cur, a, b)
  if kind == 'i' then
    local n = {1, 0, 0}
    if cur then n = int_parse(cur) end
    if not n then return nil, 'FIELD_NOT_INTEGER' end
    local sum = int_add(n, int_parse(a))
    if not sum then return nil, 'INTEGER_OVERFLOW' end
    return sum
  elseif kind == 'a' then
    local list = list_append(cur, a, tonumber(b))
    if not list then return nil, 'FIELD_NOT_LIST' end
    return list
  end
  if cur then return cur end
  return a
end
