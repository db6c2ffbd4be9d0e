-- Begin staging a run's segment under a fresh token; an earlier attempt's staging
-- (a killed worker's) is deleted. SETRANGE on a new key allocates exactly `length`
-- bytes, so the chunks land in place (APPEND would grow the string greedily, up to
-- twice its size, and the slack would stay with the segment). 1 staged, 0 already
-- committed, -1 cancelled, -3 a later attempt owns the run (its staging is kept).
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
redis.call('SETRANGE', staged, length - 1, '\0')
redis.call('EXPIRE', staged, ttl)
return 1
