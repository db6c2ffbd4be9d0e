-- Refuse every later commit of a run, unless it has committed already: the flag
-- and the commit are ordered by Redis, so exactly one of them wins. 1 flagged,
-- 0 already committed.
if redis.call('HEXISTS', key('runs'), ARGV[2]) == 1 then return 0 end
redis.call('SET', key('cancelled', ARGV[2]), 1, 'EX', ARGV[3])
return 1
