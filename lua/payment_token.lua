#!lua
-- The payment token of one order: the live one if there is one, else a new one.
--
-- A page reload or a double click on "pay" asks twice: both get the same token, so the
-- buyer never holds two tokens for one order (and the first one never goes stale under them).
--
-- KEYS[1] the order's live-token key (under the activity's hash tag)
-- ARGV[1] a fresh token, used only if none is live   ARGV[2] its TTL in milliseconds
--
-- Returns {'new', token, ttl_ms} or {'live', token, ttl_ms left}.

local live = redis.call('GET', KEYS[1])
if live then
  return {'live', live, tostring(redis.call('PTTL', KEYS[1]))}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {'new', ARGV[1], ARGV[2]}
