#!lua
-- Before the WAIT of `redis.replica_acks` (src/gate/replica_acks.rs): are these orders
-- still on this master, and one write of this connection after all of them.
--
-- Why the write: `WAIT` waits for the replication offset of the last write *its own
-- connection* made (Redis 7.2 and later; before, of any command it ran). Accepts reach the
-- master over other connections too (another process, a retry landing elsewhere, a
-- reconnect), so without a write here a `WAIT` could answer at once for an accept it does
-- not cover. The INCR comes after every accept this master holds in its replication
-- stream, so once a replica has it, the replica has them all.
--
-- Why the check: the connection may reach another node than the accept did (a failover
-- between the two): a promoted replica that never got the accept has no record of that
-- order (none, or the buyer's later order), and that order must not be called safe.
--
-- KEYS[1] buyers   hash   user_id -> "order_id:quantity:created_ms" (lua/purchase.lua)
-- KEYS[2] marks    string a counter, only ever incremented here
-- ARGV    pairs: user id, order id — each an order waiting for confirmation (an accept, a
--         replay of one, an order an `already_purchased` names, or a stream entry the
--         writer is about to store)
-- Returns one 1 or 0 per pair: whether this master holds that order as the buyer's.

local found = {}
for i = 1, #ARGV, 2 do
  local record = redis.call('HGET', KEYS[1], ARGV[i])
  local prefix = ARGV[i + 1] .. ':'
  found[#found + 1] = (record and string.sub(record, 1, #prefix) == prefix) and 1 or 0
end
redis.call('INCR', KEYS[2])
return found
