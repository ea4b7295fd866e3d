#!lua
-- Gives a cancelled or expired order's units back to the sale, at most once per order (I7).
--
-- The caller has already lowered MySQL's `sold` in the transaction that closed the order;
-- this is the Redis half. It may run twice for one order (the buyer's cancel and the
-- sweeper's repair after a crash between the two halves): the `returned` set, keyed by order
-- id and written in the same script as the increment, makes the second run change nothing.
--
-- KEYS[1] meta   KEYS[2] stock   KEYS[3] buyers   KEYS[4] returned (one hash tag)
-- ARGV[1] order id   ARGV[2] user id   ARGV[3] units   ARGV[4] invalidation channel
-- ARGV[5] activity id
--
-- Returns {'returned', remaining}, {'already'}, {'no_state'} or {'paused'}.

local meta, stock, buyers, returned = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local order = ARGV[1]

if redis.call('SISMEMBER', returned, order) == 1 then
  return {'already'}
end
-- A rebuild (src/recovery) is counting the units taken from the orders; it records the
-- returns it saw itself. The caller leaves the return to the sweeper's repair.
if redis.call('HEXISTS', meta, 'paused') == 1 then
  return {'paused'}
end
-- Redis does not hold this order (it lost the activity's state, which was then seeded
-- again from MySQL's `sold`, already lowered): the units are counted there. Adding them
-- here too would sell them twice.
local record = redis.call('HGET', buyers, ARGV[2])
if not record or string.sub(record, 1, #order + 1) ~= order .. ':'
   or redis.call('EXISTS', stock) == 0 then
  return {'no_state'}
end
redis.call('SADD', returned, order)
local left = redis.call('INCRBY', stock, ARGV[3])
-- The sale may have been sold out: every instance drops its local sold-out view, as after a
-- re-seed (src/gate/sold_out.rs), so the returned units are sold to new buyers.
redis.call('PUBLISH', ARGV[4], ARGV[5])
return {'returned', tostring(left)}
