#!lua
-- Before the WAIT of `redis.replica_acks` (src/gate/replica_acks.rs): are these buyers'
-- orders still on this master, and one write of this connection after all of them.
--
-- Why the write: `WAIT` waits for the replication offset of the last write *its own
-- connection* made (Redis 7.2 and later; before, of any command it ran). Accepts reach the
-- master over other connections too (another process, a retry landing elsewhere, a
-- reconnect), so without a write here a `WAIT` could answer at once for an accept it does
-- not cover. The INCR comes after every accept this master holds in its replication
-- stream, so once a replica has it, the replica has them all.
--
-- Why the check: the connection may reach another node than the accept did (a failover
-- between the two): a promoted replica that never got the accept has no buyer record, and
-- that buyer must not be told the order is safe.
--
-- KEYS[1] buyers   hash   user_id -> order record (written by lua/purchase.lua)
-- KEYS[2] marks    string a counter, only ever incremented here
-- ARGV    user ids whose accept (or replay, or earlier order) waits for confirmation
-- Returns one 1 or 0 per user: whether the master has that buyer's order.

local found = {}
for i, user in ipairs(ARGV) do
  found[i] = redis.call('HEXISTS', KEYS[1], user)
end
redis.call('INCR', KEYS[2])
return found
