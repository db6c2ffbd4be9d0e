local run_id, token = ARGV[2], ARGV[3]
local pointer = key('stage', run_id)
if redis.call('HGET', pointer, 'token') == token then redis.call('DEL', pointer) end
redis.call('DEL', key('stage', run_id, token))
return 1
