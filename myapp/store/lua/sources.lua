-- Shared by page.lua and summary.lua: scripts.py puts it after the prelude.
-- Sorted sources for value pages: a category's index (sorted set), or a sorted
-- slice of a segment's section B. Both give their length, a batch of elements by
-- rank, and how many of their elements sort before a given one. A batch is two
-- parallel arrays (no table per element: allocation is what costs in Lua): v
-- values and m members (value, segment, row) as in the indexes. Elements order by
-- (v, segment, row), which is (value, id).
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
