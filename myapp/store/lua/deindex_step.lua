-- Take rows of a run out of its category ARGV[3]'s value index, while the run stays
-- visible (readers find those rows in its segment): the client sends the members of
-- the category's indexed rows just below ARGV[4] (where removal stands), in value
-- order. With category 0 and no members, only marks the run as leaving the indexes
-- (indexing stops). Returns the run's rows still indexed, or -1 when ARGV[4] is not
-- where removal stands (read the state again).
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
