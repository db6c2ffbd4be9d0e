"""The data set's Lua scripts: each is atomic and does a bounded amount of work.

Every script starts with the same prelude (key names, the segment layout of
`segment.py`, run metadata). ARGV[1] is always the key prefix, hash tag included;
KEYS[1] names one key of the data set, so Redis Cluster routes the script to the
slot every key of the data set shares.

Scripts may not hold Redis for long: no loop here is longer than a page, a chunk
(`INDEX_BATCH` entries) or a binary search.
"""

from __future__ import annotations

from myapp.store.segment import CATEGORIES

# How long the data set remembers a run's latest attempt (`fence:<run_id>`): far
# longer than any host stays cut off and still comes back with its run.
FENCE_TTL_SECONDS = 86_400

_PRELUDE = """
local P = ARGV[1]
local CATS = {%(categories)s}
local NCAT = #CATS
-- Record sizes of the segment sections (segment.py): A rows, D by value,
-- B by value per category, C rows per category.
local A, D, B, C = 9, 13, 12, 4

local function key(...) return P .. table.concat({...}, ':') end

-- Doubles travel as text with 17 significant digits: exact both ways (Lua's own
-- number-to-string keeps 14).
local function fmt(v) return string.format('%%.17g', v) end

-- Run metadata, "first n created n_1..n_NCAT sum_1..sum_NCAT run_id", and the byte
-- offset of each section of its segment. Cached per script call.
local META_PATTERN = '^(%%d+) (%%d+) (%%S+) ' .. string.rep('(%%d+) ', NCAT)
  .. string.rep('(%%S+) ', NCAT) .. '(.*)$'
local META = {}
local function meta(seg)
  seg = tonumber(seg)
  if META[seg] then return META[seg] end
  local raw = redis.call('HGET', key('segs'), seg)
  if not raw then return nil end
  local f = {string.match(raw, META_PATTERN)}
  local m = {seg = seg, first = tonumber(f[1]), n = tonumber(f[2]), created = f[3],
    cat = {}, sum = {}, run_id = f[4 + 2 * NCAT]}
  for c = 1, NCAT do
    m.cat[c], m.sum[c] = tonumber(f[3 + c]), f[3 + NCAT + c]
  end
  m.off_d = A * m.n
  m.off_b, m.off_c = {}, {}
  local b, cc = (A + D) * m.n, (A + D + B) * m.n
  for c = 1, NCAT do
    m.off_b[c], m.off_c[c] = b, cc
    b, cc = b + B * m.cat[c], cc + C * m.cat[c]
  end
  META[seg] = m
  return m
end

-- Indexing state of a run not (or no longer) fully in the value indexes:
-- "+ j_1..j_NCAT" while being indexed, "- j_1..j_NCAT" while being removed; j_c
-- is how many of its category-c rows, in value order, are in the index.
local function get_state(seg)
  local raw = redis.call('HGET', key('unindexed'), seg)
  if not raw then return nil end
  local st = {dir = string.sub(raw, 1, 1), j = {}}
  for word in string.gmatch(string.sub(raw, 3), '%%d+') do
    st.j[#st.j + 1] = tonumber(word)
  end
  return st
end

local function put_state(seg, st)
  redis.call('HSET', key('unindexed'), seg, st.dir .. ' ' .. table.concat(st.j, ' '))
end

-- An index member: (value, segment, row), big-endian. Members of equal score sort
-- by their bytes, i.e. by (segment, row), which is id order; and a page read from an
-- index needs no scores (Redis would format each one as text).
local function member(v, seg, row) return struct.pack('>dII', v, seg, row) end

-- A staging token names its attempt at the run: "<attempt>-<random>" (a bare
-- random token is not fenced). `fence:<run_id>` holds the latest attempt any worker
-- claimed. True when the token's attempt is older (it was taken over: refuse its
-- writes); otherwise the fence is raised to it.
local function superseded(run_id, token)
  local attempt = tonumber(string.match(token, '^(%%d+)%%-'))
  if not attempt then return false end
  local fence = key('fence', run_id)
  local current = tonumber(redis.call('GET', fence) or '0')
  if attempt < current then return true end
  if attempt > current then
    redis.call('SET', fence, attempt, 'EX', %(fence_ttl)d)
  end
  return false
end
"""


def _script(body: str) -> str:
    prelude = _PRELUDE % {
        "categories": ", ".join(f"'{c}'" for c in CATEGORIES),
        "fence_ttl": FENCE_TTL_SECONDS,
    }
    return prelude + body


# Begin staging a run's segment under a fresh token; an earlier attempt's staging
# (a killed worker's) is deleted. SETRANGE on a new key allocates exactly `length`
# bytes, so the chunks land in place (APPEND would grow the string greedily, up to
# twice its size, and the slack would stay with the segment). 1 staged, 0 already
# committed, -1 cancelled, -3 a later attempt owns the run (its staging is kept).
STAGE_BEGIN = _script("""
local run_id, token, ttl, length = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if superseded(run_id, token) then return -3 end
if redis.call('HEXISTS', key('runs'), run_id) == 1 then return 0 end
if redis.call('EXISTS', key('cancelled', run_id)) == 1 then return -1 end
local pointer = key('stage', run_id)
local old = redis.call('HGET', pointer, 'token')
if old then redis.call('DEL', key('stage', run_id, old)) end
redis.call('DEL', pointer)
redis.call('HSET', pointer, 'token', token, 'written', 0)
redis.call('EXPIRE', pointer, ttl)
local staged = key('stage', run_id, token)
redis.call('SETRANGE', staged, length - 1, '\\0')
redis.call('EXPIRE', staged, ttl)
return 1
""")

# Write the next chunk of the staged segment at ARGV[4]. 1 written; 0 the staging is
# gone (expired, or superseded by another attempt); -1 the run was cancelled; -3 a
# later attempt owns the run.
STAGE_WRITE = _script("""
local run_id, token, offset = ARGV[2], ARGV[3], tonumber(ARGV[4])
if superseded(run_id, token) then return -3 end
if redis.call('EXISTS', key('cancelled', run_id)) == 1 then return -1 end
local pointer, staged = key('stage', run_id), key('stage', run_id, token)
local st = redis.call('HMGET', pointer, 'token', 'written')
if st[1] ~= token or tonumber(st[2]) ~= offset
   or redis.call('EXISTS', staged) == 0 then
  return 0
end
redis.call('SETRANGE', staged, offset, ARGV[5])
redis.call('HSET', pointer, 'written', offset + #ARGV[5])
return 1
""")

STAGE_ABORT = _script("""
local run_id, token = ARGV[2], ARGV[3]
local pointer = key('stage', run_id)
if redis.call('HGET', pointer, 'token') == token then redis.call('DEL', pointer) end
redis.call('DEL', key('stage', run_id, token))
return 1
""")

# Make a staged run visible, all at once: O(1) in its size (RENAME, a few hash
# and sorted-set writes). Returns {status, first id, rows, segment}: status 1
# appended, 0 already committed (its span), -1 cancelled, -2 the staging is gone,
# -3 a later attempt owns the run (checked first: a taken-over attempt that reaches
# its commit appends nothing, whether or not the later one has committed).
PUBLISH = _script("""
if redis.replicate_commands then redis.replicate_commands() end
local run_id, token = ARGV[2], ARGV[3]
local n, length = tonumber(ARGV[4]), tonumber(ARGV[5])
local counts, sums = {}, {}
for c = 1, NCAT do
  counts[c] = tonumber(ARGV[5 + c])
  sums[c] = ARGV[5 + NCAT + c]
end
local pointer = key('stage', run_id)
local staged = key('stage', run_id, token)
local function unstage()
  if redis.call('HGET', pointer, 'token') == token then redis.call('DEL', pointer) end
  redis.call('DEL', staged)
end

if superseded(run_id, token) then
  unstage()
  return {-3, 0, 0, 0}
end
local seen = redis.call('HGET', key('runs'), run_id)
if seen then
  unstage()
  local m = meta(seen)
  if m then return {0, m.first, m.n, m.seg} end
  return {0, 0, 0, 0}
end
if redis.call('EXISTS', key('cancelled', run_id)) == 1 then
  unstage()
  return {-1, 0, 0, 0}
end
if n == 0 then
  redis.call('HSET', key('runs'), run_id, 0)
  return {1, 0, 0, 0}
end
local st = redis.call('HMGET', pointer, 'token', 'written')
if st[1] ~= token or tonumber(st[2]) ~= length
   or redis.call('STRLEN', staged) ~= length then
  return {-2, 0, 0, 0}
end

-- The first write: a corrupt id counter fails the script here, before any change.
local last = redis.call('INCRBY', key('seq'), n)
local first = last - n + 1
local seg = redis.call('INCR', key('nseg'))
redis.call('RENAME', staged, key('seg', seg))
redis.call('PERSIST', key('seg', seg))
redis.call('DEL', pointer)

-- created_at from Redis's clock: one clock for every writer, so creation order is
-- id order. Days to a civil date: H. Hinnant's days_from_civil, inverted.
local now = redis.call('TIME')
local secs, ms = tonumber(now[1]), math.floor(tonumber(now[2]) / 1000)
local days = math.floor(secs / 86400)
local rem = secs - days * 86400
local z = days + 719468
local era = math.floor(z / 146097)
local doe = z - era * 146097
local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
  - math.floor(doe / 146096)) / 365)
local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
local mp = math.floor((5 * doy + 2) / 153)
local day = doy - math.floor((153 * mp + 2) / 5) + 1
local month = mp < 10 and mp + 3 or mp - 9
local year = yoe + era * 400 + (month <= 2 and 1 or 0)
local created = string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', year, month,
  day, math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, ms)

redis.call('HSET', key('segs'), seg, table.concat({first, n, created,
  table.concat(counts, ' '), table.concat(sums, ' '), run_id}, ' '))
redis.call('HSET', key('runs'), run_id, seg)
redis.call('ZADD', key('by_first'), first, seg)
for c = 1, NCAT do
  if counts[c] > 0 then
    local name = CATS[c]
    local stats = redis.call('HMGET', key('stats'), 'gone:' .. name, 'count:' .. name)
    local cum = (tonumber(stats[1]) or 0) + (tonumber(stats[2]) or 0)
    redis.call('ZADD', key('cat', CATS[c], 'by_cum'), cum, seg)
    redis.call('HINCRBY', key('stats'), 'count:' .. CATS[c], counts[c])
    redis.call('HINCRBYFLOAT', key('stats'), 'sum:' .. CATS[c], sums[c])
  end
end
local zeros = {}
for c = 1, NCAT do zeros[c] = 0 end
put_state(seg, {dir = '+', j = zeros})
redis.call('INCR', key('version'))
return {1, first, n, seg}
""")

# Add the next rows of a published run's category ARGV[3] to its value index: the
# client read them from the segment (section B, from row ARGV[4] of that category in
# value order) and sends them as ZADD's score-member pairs, so this script only
# checks and writes. Returns the run's rows still outside the indexes (0: fully
# indexed or being dropped), or -1 when ARGV[4] is not where indexing stands (a
# concurrent indexer moved it: read the state again).
INDEX_STEP = _script("""
local seg, c, from = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local st = get_state(seg)
if not st or st.dir ~= '+' then return 0 end
if st.j[c] ~= from then return -1 end
local m = meta(seg)
local take = (#ARGV - 4) / 2
if take < 1 or from + take > m.cat[c] then
  return redis.error_reply('index step out of range')
end
redis.call('ZADD', key('cat', CATS[c], 'by_value'), unpack(ARGV, 5))
st.j[c] = from + take
local left = 0
for i = 1, NCAT do left = left + m.cat[i] - st.j[i] end
if left == 0 then redis.call('HDEL', key('unindexed'), seg) else put_state(seg, st) end
return left
""")

# Take rows of a run out of its category ARGV[3]'s value index, while the run stays
# visible (readers find those rows in its segment): the client sends the members of
# the category's indexed rows just below ARGV[4] (where removal stands), in value
# order. With category 0 and no members, only marks the run as leaving the indexes
# (indexing stops). Returns the run's rows still indexed, or -1 when ARGV[4] is not
# where removal stands (read the state again).
DEINDEX_STEP = _script("""
local seg, c, from = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local m = meta(seg)
if not m then return 0 end
local st = get_state(seg)
if not st then
  st = {j = {}}
  for i = 1, NCAT do st.j[i] = m.cat[i] end
end
st.dir = '-'
if c > 0 then
  if st.j[c] ~= from then return -1 end
  local take = #ARGV - 4
  if take < 1 or take > from then
    return redis.error_reply('index removal out of range')
  end
  redis.call('ZREM', key('cat', CATS[c], 'by_value'), unpack(ARGV, 5))
  st.j[c] = from - take
end
put_state(seg, st)
local left = 0
for i = 1, NCAT do left = left + st.j[i] end
return left
""")

# Drop the oldest run once it is out of the value indexes: its rows disappear all
# at once. 1 dropped, 0 not (not the oldest, or still indexed).
DROP = _script("""
local seg = ARGV[2]
local m = meta(seg)
if not m then return 0 end
if redis.call('ZRANGE', key('by_first'), 0, 0)[1] ~= seg then return 0 end
local st = get_state(seg)
if not st or st.dir ~= '-' then return 0 end
for c = 1, NCAT do
  if st.j[c] ~= 0 then return 0 end
end
redis.call('ZREM', key('by_first'), seg)
for c = 1, NCAT do
  if m.cat[c] > 0 then
    local name = CATS[c]
    redis.call('ZREM', key('cat', name, 'by_cum'), seg)
    redis.call('HINCRBY', key('stats'), 'gone:' .. name, m.cat[c])
    if redis.call('HINCRBY', key('stats'), 'count:' .. name, -m.cat[c]) == 0 then
      -- No rounding left behind by adding and subtracting sums.
      redis.call('HSET', key('stats'), 'sum:' .. name, 0)
    else
      redis.call('HINCRBYFLOAT', key('stats'), 'sum:' .. name, fmt(-tonumber(m.sum[c])))
    end
  end
end
redis.call('INCRBY', key('trimmed'), m.n)
redis.call('HDEL', key('runs'), m.run_id)
redis.call('HDEL', key('segs'), seg)
redis.call('HDEL', key('unindexed'), seg)
redis.call('UNLINK', key('seg', seg))
redis.call('INCR', key('version'))
return 1
""")

# Refuse every later commit of a run, unless it has committed already: the flag
# and the commit are ordered by Redis, so exactly one of them wins. 1 flagged,
# 0 already committed.
# Record that attempt ARGV[3] claimed run ARGV[2] (the worker, right after its
# claim): 1, or 0 when a later attempt already had.
FENCE = _script("""
return superseded(ARGV[2], ARGV[3] .. '-') and 0 or 1
""")

CANCEL = _script("""
if redis.call('HEXISTS', key('runs'), ARGV[2]) == 1 then return 0 end
redis.call('SET', key('cancelled', ARGV[2]), 1, 'EX', ARGV[3])
return 1
""")

SPAN = _script("""
local seg = redis.call('HGET', key('runs'), ARGV[2])
if not seg then return nil end
local m = meta(seg)
if not m then return {0, 0} end
return {m.first, m.n}
""")

# Sorted sources for value pages: a category's index (sorted set), or a sorted
# slice of a segment's section B. Both give their length, a batch of elements by
# rank, and how many of their elements sort before a given one. A batch is two
# parallel arrays (no table per element: allocation is what costs in Lua): v
# values and m members (value, segment, row) as in the indexes. Elements order by
# (v, segment, row), which is (value, id).
_SOURCES = """
local function less(xv, xm, yv, ym)
  if xv ~= yv then return xv < yv end
  -- Ties in value are rare: only then are segment and row decoded.
  local _, xs, xr = struct.unpack('>dII', xm)
  local _, ys, yr = struct.unpack('>dII', ym)
  if xs ~= ys then return xs < ys end
  return xr < yr
end

-- The first rank in [lo, hi) of a source whose element is not `before` (given
-- it as a batch of one), or hi: a lower bound, for `before` true on a prefix of
-- the ranks. O(log(hi - lo)) reads of one element.
local function search(src, lo, hi, before)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if before(src.range(mid, 1)) then lo = mid + 1 else hi = mid end
  end
  return lo
end

local function zset_source(c)
  local k = key('cat', CATS[c], 'by_value')
  local src = {len = redis.call('ZCARD', k), c = c}
  function src.range(first, count)
    local m, v = redis.call('ZRANGE', k, first, first + count - 1), {}
    for i = 1, #m do v[i] = struct.unpack('>d', m[i]) end
    return {v = v, m = m}
  end
  function src.count_below(t)
    return redis.call('ZCOUNT', k, '-inf', '(' .. fmt(t))
  end
  function src.count_less(ev, em)
    -- ZCOUNT places ev among the other values; only its ties are searched.
    local sv = fmt(ev)
    local lo = redis.call('ZCOUNT', k, '-inf', '(' .. sv)
    local hi = lo + redis.call('ZCOUNT', k, sv, sv)
    return search(src, lo, hi, function(b) return less(b.v[1], b.m[1], ev, em) end)
  end
  return src
end

local function slice_source(meta_, c, first, len)
  local data, base = key('seg', meta_.seg), meta_.off_b[c] + B * first
  local src = {len = len, c = c}
  function src.range(start, count)
    local from = base + B * start
    local raw = redis.call('GETRANGE', data, from, from + B * count - 1)
    local v, m, pos = {}, {}, 1
    for i = 1, count do
      local r
      v[i], r, pos = struct.unpack('>dI', raw, pos)
      m[i] = member(v[i], meta_.seg, r)
    end
    return {v = v, m = m}
  end
  function src.count_below(t)
    return search(src, 0, len, function(b) return b.v[1] < t end)
  end
  function src.count_less(ev, em)
    return search(src, 0, len, function(b) return less(b.v[1], b.m[1], ev, em) end)
  end
  return src
end

-- The value-ordered sources of the visible rows of the given categories: their
-- indexes, plus the parts of runs that are not (or no longer) indexed.
local function value_sources(cats)
  local sources = {}
  for _, c in ipairs(cats) do
    local src = zset_source(c)
    if src.len > 0 then sources[#sources + 1] = src end
  end
  local pending = redis.call('HGETALL', key('unindexed'))
  for i = 1, #pending, 2 do
    local m, st = meta(pending[i]), get_state(pending[i])
    if m and st then
      for _, c in ipairs(cats) do
        if m.cat[c] > st.j[c] then
          sources[#sources + 1] = slice_source(m, c, st.j[c], m.cat[c] - st.j[c])
        end
      end
    end
  end
  return sources
end

-- Windows narrower than this in total are merged instead of searched.
local MERGE_WINDOW = 32
-- Value thresholds tried before searching by rank.
local THRESHOLD_PROBES = 4

-- The `count` elements at ascending ranks [k, k + count) of the union of sorted
-- sources, as {m = members, c = categories}. Finds, for each source, a window
-- [lo, hi) of ranks such that at least lo and at most hi of its elements sort
-- before rank k, with sum(hi - lo) <= MERGE_WINDOW; then merges from lo, reading
-- each source in batches, skips what sorts before k and keeps `count`.
--
-- Fast path: a value threshold t splits every source at once (the elements below
-- t are the first R(t) of the union), so a t with k - MERGE_WINDOW <= R(t) <= k
-- gives lo = hi = the per-source counts below t. t is interpolated from one source,
-- a few times; for a uniform mix it lands in two or three probes of one count per
-- source. Fallback (many equal values, skewed mixes): from the best thresholds
-- found, bisect rank windows: a pivot in the widest window, what sorts before it
-- in every source, every window narrowed; O(sources * log n) steps.
local function select_range(sources, k, count)
  local S, lo, hi = #sources, {}, {}
  if S == 1 then
    -- One source: the page is one batch, no merge.
    local out = {m = sources[1].range(k, count).m, c = {}}
    for i = 1, #out.m do out.c[i] = sources[1].c end
    return out
  end
  local n, big = 0, 1
  for i = 1, S do
    lo[i], hi[i], n = 0, sources[i].len, n + sources[i].len
    if sources[i].len > sources[big].len then big = i end
  end
  local target = math.max(0, k - MERGE_WINDOW / 2)
  local share = sources[big].len / n
  local probe, below_k, above_k = math.floor(target * share), -1, n + 1
  for _ = 1, THRESHOLD_PROBES do
    probe = math.max(0, math.min(sources[big].len - 1, probe))
    local t = sources[big].range(probe, 1).v[1]
    local counts, rank = {}, 0
    for i = 1, S do
      counts[i] = sources[i].count_below(t)
      rank = rank + counts[i]
    end
    if rank <= k and rank > below_k then
      below_k = rank
      for i = 1, S do lo[i] = counts[i] end
    elseif rank > k and rank < above_k then
      above_k = rank
      for i = 1, S do hi[i] = counts[i] end
    end
    if k - below_k <= MERGE_WINDOW then
      for i = 1, S do hi[i] = lo[i] end
      break
    end
    local next_probe = counts[big] + math.floor((target - rank) * share)
    if next_probe == probe then break end
    probe = next_probe
  end

  local function sums()
    local l, w = 0, 0
    for i = 1, S do l, w = l + lo[i], w + hi[i] - lo[i] end
    return l, w
  end
  local below_lo, width = sums()
  while width > MERGE_WINDOW do
    local best, bw = 1, -1
    for i = 1, S do
      if hi[i] - lo[i] > bw then best, bw = i, hi[i] - lo[i] end
    end
    local mid = lo[best] + math.floor(bw / 2)
    local p = sources[best].range(mid, 1)
    local pv, pm = p.v[1], p.m[1]
    local below, rank = {}, 0
    for i = 1, S do
      below[i] = i == best and mid or sources[i].count_less(pv, pm)
      rank = rank + below[i]
    end
    if rank == k then
      for i = 1, S do lo[i], hi[i] = below[i], below[i] end
    elseif rank < k then
      below[best] = mid + 1
      for i = 1, S do
        if below[i] > lo[i] then lo[i] = below[i] end
      end
    else
      for i = 1, S do
        if below[i] < hi[i] then hi[i] = below[i] end
      end
    end
    below_lo, width = sums()
  end
  local skip = k - below_lo
  local out = {m = {}, c = {}}
  -- Each source first reads its share of the merge, then small batches as needed.
  local bufs, lens, pos, next_rank = {}, {}, {}, {}
  local function fill(i, n)
    n = math.min(n, sources[i].len - next_rank[i])
    if n <= 0 then return false end
    bufs[i], pos[i] = sources[i].range(next_rank[i], n), 1
    lens[i], next_rank[i] = #bufs[i].v, next_rank[i] + n
    return true
  end
  for i = 1, S do
    next_rank[i], lens[i], pos[i] = lo[i], 0, 1
    fill(i, math.ceil((skip + count) / S) + 4)
  end
  local n = 0
  while n < count do
    local best, bv, bm = nil, nil, nil
    for i = 1, S do
      if pos[i] <= lens[i] or fill(i, 16) then
        local v = bufs[i].v[pos[i]]
        local m = bufs[i].m[pos[i]]
        if best == nil or v < bv or (v == bv and less(v, m, bv, bm)) then
          best, bv, bm = i, v, m
        end
      end
    end
    if best == nil then break end
    if skip > 0 then
      skip = skip - 1
    else
      n = n + 1
      out.m[n], out.c[n] = bm, sources[best].c
    end
    pos[best] = pos[best] + 1
  end
  return out
end
"""

# One page of rows, ascending (the caller reverses a descending page). Returns
# {total, runs, piece...}: runs is JSON [segment, its `segs` entry, ...] for every
# segment the rows come from, and each piece is a list whose first
# item says how to read the rest (segment sections are passed through as raw bytes,
# decoded by the client):
#   {'A', segment, first row, section A bytes}       rows in creation order
#   {'D', segment, section D bytes}                  a run's rows by value
#   {'B', segment, category, section B bytes}        a run's category by value
#   {'C', segment, category, section C bytes, first row of the A bytes, A bytes}
#                                                    a category's rows in creation
#                                                    order, their A records within
#   {'V', members, categories (digits)}              rows from the value indexes:
#                                                    (value d, segment I, row I)
# ARGV: prefix, offset, limit, sort ('value' or 'created_at'), '1' for descending,
# run id or '', category number (1-based) or ''.
PAGE = _script(
    _SOURCES
    + """
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
"""
)

# Count, sum, min and max of the given categories (ARGV[2]: a category number, or
# '' for all): {count_1..count_NCAT, sum_1..sum_NCAT, min or '', max or ''}.
SUMMARY = _script(
    _SOURCES
    + """
local cats = {}
if ARGV[2] ~= '' then
  cats = {tonumber(ARGV[2])}
else
  for c = 1, NCAT do cats[c] = c end
end
local out, low, high = {}, nil, nil
for c = 1, NCAT do
  out[c] = redis.call('HGET', key('stats'), 'count:' .. CATS[c]) or '0'
  out[NCAT + c] = redis.call('HGET', key('stats'), 'sum:' .. CATS[c]) or '0'
end
for _, src in ipairs(value_sources(cats)) do
  local first, last = src.range(0, 1), src.range(src.len - 1, 1)
  if low == nil or first.v[1] < low then low = first.v[1] end
  if high == nil or last.v[1] > high then high = last.v[1] end
end
out[2 * NCAT + 1] = low and fmt(low) or ''
out[2 * NCAT + 2] = high and fmt(high) or ''
return out
"""
)
