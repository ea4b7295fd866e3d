-- The yardstick of issue 11: the simplest script a purchase could be, run by redis-benchmark
-- (loadtest/run measures Redis' CPU per call of it, and holds lua/purchase.lua's CPU per
-- accepted order, the writer's reads and acks included, against it). No window, no limit,
-- no backlog bound, no batch: one buyer per call.
--
-- KEYS[1] idempotency record   KEYS[2] buyers   KEYS[3] stock   KEYS[4] stream
-- ARGV[1] user id   ARGV[2] order id   ARGV[3] TTL (seconds)
local seen = redis.call('GET', KEYS[1])
if seen then
  return seen
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 'already'
end
local left = tonumber(redis.call('GET', KEYS[3]) or '0')
if left < 1 then
  return 'sold_out'
end
redis.call('DECR', KEYS[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('XADD', KEYS[4], '*', 'o', ARGV[2], 'u', ARGV[1])
return 'accepted'
