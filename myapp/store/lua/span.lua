local seg = redis.call('HGET', key('runs'), ARGV[2])
if not seg then return nil end
local m = meta(seg)
if not m then return {0, 0} end
return {m.first, m.n}
