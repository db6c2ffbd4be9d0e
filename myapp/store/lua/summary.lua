-- Count, sum, min and max of the given categories (ARGV[2]: a category number, or
-- '' for all): {count_1..count_NCAT, sum_1..sum_NCAT, min or '', max or ''}.
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
