-- Drop the oldest run once it is out of the value indexes: its rows disappear all
-- at once. 1 dropped, 0 not (not the oldest, or still indexed).
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
