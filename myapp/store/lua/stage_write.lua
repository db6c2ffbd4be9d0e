-- Write the next chunk of the staged segment at ARGV[4]. 1 written; 0 the staging is
-- gone (expired, or superseded by another attempt); -1 the run was cancelled; -3 a
-- later attempt owns the run.
local run_id, token, offset = ARGV[2], ARGV[3], tonumber(ARGV[4])
if superseded(run_id, token) then return -3 end
if redis.call('EXISTS', key('cancelled', run_id)) == 1 then return -1 end
local pointer, staged = key('stage', run_id), key('stage', run_id, token)
local st = redis.call('HMGET', pointer, 'token', 'written')
if st[1] ~= token or tonumber(st[2]) ~= offset
   or redis.call('EXISTS', staged) == 0 then
  return 0
end
redis.call('SETRANGE', staged, offset, ARGV[5])
redis.call('HSET', pointer, 'written', offset + #ARGV[5])
return 1
