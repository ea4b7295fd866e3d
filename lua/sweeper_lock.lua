#!lua
-- Takes or renews the sweeper lock: one sweeper acts at a time across all processes.
--
-- A lease alone is not enough: a sweeper paused (GC, a stopped VM, a slow disk) past its
-- lease still believes it holds the lock when it wakes. So each new holder gets a fencing
-- token, strictly greater than every token handed out before (INCR), and MySQL refuses a
-- write carrying a token lower than one it has seen (`seckill_fence`,
-- src/lifecycle/fence.rs).
--
-- Redis may lose the counter (a restart without persistence, a failover to a replica that
-- had not received it); INCR would then start again below the tokens MySQL has seen and
-- every holder would be refused for ever. So the caller passes the highest token MySQL has
-- seen as a floor, and a new token is always above it.
--
-- KEYS[1] lock ("owner|token", with the lease as TTL)   KEYS[2] token counter (one hash tag)
-- ARGV[1] owner (unique per process)   ARGV[2] lease (ms)   ARGV[3] floor (MySQL's token)
--
-- Returns {'acquired', token}, {'renewed', token} (our own lock, lease extended) or {'held'}.

local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, '|', 1, true)
  if sep and string.sub(v, 1, sep - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {'renewed', string.sub(v, sep + 1)}
  end
  return {'held'}
end
local token = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if token <= floor then
  token = floor + 1
  redis.call('SET', KEYS[2], token)
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return {'acquired', tostring(token)}
