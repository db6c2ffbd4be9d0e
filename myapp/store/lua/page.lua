-- One page of rows, ascending (the caller reverses a descending page). Returns
-- {total, runs, piece...}: runs is JSON [segment, its `segs` entry, ...] for every
-- segment the rows come from, and each piece is a list whose first
-- item says how to read the rest (segment sections are passed through as raw bytes,
-- decoded by the client):
--   {'A', segment, first row, section A bytes}       rows in creation order
--   {'D', segment, section D bytes}                  a run's rows by value
--   {'B', segment, category, section B bytes}        a run's category by value
--   {'C', segment, category, section C bytes, first row of the A bytes, A bytes}
--                                                    a category's rows in creation
--                                                    order, their A records within
--   {'V', members, categories (digits)}              rows from the value indexes:
--                                                    (value d, segment I, row I)
-- ARGV: prefix, offset, limit, sort ('value' or 'created_at'), '1' for descending,
-- run id or '', category number (1-based) or ''.
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local by_value, desc = ARGV[4] == 'value', ARGV[5] == '1'
local run_id, cat = ARGV[6], tonumber(ARGV[7])
local pieces, used = {}, {}

-- Ascending ranks [first, first + count) of the requested page.
local function window(total)
  if desc then
    local first = math.max(0, total - offset - limit)
    return first, total - offset - first
  end
  return offset, math.min(limit, total - offset)
end

local function section(m, start, size, first, count)
  local from = start + size * first
  return redis.call('GETRANGE', key('seg', m.seg), from, from + size * count - 1)
end

local function use(m) used[m.seg] = m end

-- Category-c rows [first, first + count) of a run in creation order: their row
-- numbers (section C) and the A records they point at, read as one span when the
-- rows are not too sparse, else one by one.
local function category_rows(m, c, first, count)
  use(m)
  local rows = section(m, m.off_c[c], C, first, count)
  local low = struct.unpack('>I', rows, 1)
  local high = struct.unpack('>I', rows, C * (count - 1) + 1)
  local span
  if high - low < 32 * count then
    span = section(m, 0, A, low, high - low + 1)
  else
    local parts, pos = {}, 1
    for i = 1, count do
      local r
      r, pos = struct.unpack('>I', rows, pos)
      parts[i] = section(m, 0, A, r, 1)
    end
    span, low = table.concat(parts), -1
  end
  pieces[#pieces + 1] = {'C', m.seg, c, rows, low, span}
end

local total = 0
if run_id ~= '' then
  local seg = redis.call('HGET', key('runs'), run_id)
  local m = seg and meta(seg)
  if m then
    total = cat and m.cat[cat] or m.n
    local first, count = window(total)
    if count > 0 then
      use(m)
      if by_value and cat then
        pieces[1] = {'B', m.seg, cat, section(m, m.off_b[cat], B, first, count)}
      elseif by_value then
        pieces[1] = {'D', m.seg, section(m, m.off_d, D, first, count)}
      elseif cat then
        category_rows(m, cat, first, count)
      else
        pieces[1] = {'A', m.seg, first, section(m, 0, A, first, count)}
      end
    end
  end
elseif by_value then
  local cats = {}
  if cat then cats = {cat} else for c = 1, NCAT do cats[c] = c end end
  local sources = value_sources(cats)
  for _, src in ipairs(sources) do total = total + src.len end
  local first, count = window(total)
  if count > 0 then
    local rows = select_range(sources, first, count)
    for i = 1, #rows.m do
      local b1, b2, b3, b4 = string.byte(rows.m[i], 9, 12)
      used[((b1 * 256 + b2) * 256 + b3) * 256 + b4] = true
    end
    pieces[1] = {'V', table.concat(rows.m), table.concat(rows.c)}
  end
elseif cat then
  local name = CATS[cat]
  local stats = redis.call('HMGET', key('stats'), 'count:' .. name, 'gone:' .. name)
  total = tonumber(stats[1]) or 0
  local first, count = window(total)
  -- Positions count every category-c row ever committed; `gone` were dropped.
  local pos = (tonumber(stats[2]) or 0) + first
  while count > 0 do
    local hit = redis.call('ZREVRANGEBYSCORE', key('cat', name, 'by_cum'), pos,
      '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
    local m = meta(hit[1])
    local from = pos - tonumber(hit[2])
    local take = math.min(count, m.cat[cat] - from)
    category_rows(m, cat, from, take)
    pos, count = pos + take, count - take
  end
else
  local ids = redis.call('MGET', key('seq'), key('trimmed'))
  local trimmed = tonumber(ids[2]) or 0
  total = (tonumber(ids[1]) or 0) - trimmed
  local first, count = window(total)
  local id = trimmed + 1 + first
  while count > 0 do
    local m = meta(redis.call('ZREVRANGEBYSCORE', key('by_first'), id, '-inf',
      'LIMIT', 0, 1)[1])
    local from = id - m.first
    local take = math.min(count, m.n - from)
    use(m)
    pieces[#pieces + 1] = {'A', m.seg, from, section(m, 0, A, from, take)}
    id, count = id + take, count - take
  end
end

-- The runs' metadata as stored: the client reads first id, created_at and run id.
local segs = {}
for seg in pairs(used) do segs[#segs + 1] = seg end
local runs = {}
if #segs > 0 then
  local raw = redis.call('HMGET', key('segs'), unpack(segs))
  for i = 1, #segs do runs[2 * i - 1], runs[2 * i] = segs[i], raw[i] end
end
local out = {total, cjson.encode(runs)}
for _, piece in ipairs(pieces) do out[#out + 1] = piece end
return out
