-- The prelude of every script (scripts.py puts it first): key names, the segment
-- layout of segment.py, run metadata, indexing state and the fence. ARGV[1] is
-- always the key prefix, hash tag included. Before this file, scripts.py defines
-- the values Python owns: CATS (segment.CATEGORIES, in order) and FENCE_TTL
-- (scripts.FENCE_TTL_SECONDS).
local P = ARGV[1]
local NCAT = #CATS
-- Record sizes of the segment sections (segment.py): A rows, D by value,
-- B by value per category, C rows per category.
local A, D, B, C = 9, 13, 12, 4

local function key(...) return P .. table.concat({...}, ':') end

-- Doubles travel as text with 17 significant digits: exact both ways (Lua's own
-- number-to-string keeps 14).
local function fmt(v) return string.format('%.17g', v) end

-- Run metadata, "first n created n_1..n_NCAT sum_1..sum_NCAT run_id", and the byte
-- offset of each section of its segment. Cached per script call.
local META_PATTERN = '^(%d+) (%d+) (%S+) ' .. string.rep('(%d+) ', NCAT)
  .. string.rep('(%S+) ', NCAT) .. '(.*)$'
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
  for word in string.gmatch(string.sub(raw, 3), '%d+') do
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
  local attempt = tonumber(string.match(token, '^(%d+)%-'))
  if not attempt then return false end
  local fence = key('fence', run_id)
  local current = tonumber(redis.call('GET', fence) or '0')
  if attempt < current then return true end
  if attempt > current then
    redis.call('SET', fence, attempt, 'EX', FENCE_TTL)
  end
  return false
end
