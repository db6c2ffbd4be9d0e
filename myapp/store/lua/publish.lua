-- Make a staged run visible, all at once: O(1) in its size (RENAME, a few hash
-- and sorted-set writes). Returns {status, first id, rows, segment}: status 1
-- appended, 0 already committed (its span), -1 cancelled, -2 the staging is gone,
-- -3 a later attempt owns the run (checked first: a taken-over attempt that reaches
-- its commit appends nothing, whether or not the later one has committed).
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
