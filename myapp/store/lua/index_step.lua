-- Add the next rows of a published run's category ARGV[3] to its value index: the
-- client read them from the segment (section B, from row ARGV[4] of that category in
-- value order) and sends them as ZADD's score-member pairs, so this script only
-- checks and writes. Returns the run's rows still outside the indexes (0: fully
-- indexed or being dropped), or -1 when ARGV[4] is not where indexing stands (a
-- concurrent indexer moved it: read the state again).
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
