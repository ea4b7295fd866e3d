#!lua
-- Lets go of the sweeper lock if, and only if, `owner` holds it (compare and delete).
--
-- A holder whose token MySQL refused (a newer token was seen there) lets go so that its
-- next round takes a new token, above MySQL's (lua/sweeper_lock.lua); a lock held by
-- another process is left alone.
--
-- KEYS[1] lock ("owner|token")   ARGV[1] owner
--
-- Returns 1 when the lock was ours and is gone, 0 otherwise.

local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
  return redis.call('DEL', KEYS[1])
end
return 0
