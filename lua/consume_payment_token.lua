#!lua
-- Consumes a payment token at most once (I8): the comparison and the delete happen in one
-- script, so two pay requests holding the same token cannot both see it live.
--
-- The consumed token leaves a record naming the payment it started and the pay request's
-- idempotency key: a second use with another key is told which payment took the token, and
-- the same key (the same request, retried after a crash) may go on with that payment.
--
-- KEYS[1] the order's live-token key   KEYS[2] the used-token record of ARGV[1]
-- ARGV[1] the token presented   ARGV[2] "payment_id|idempotency_key"
-- ARGV[3] TTL of the used-token record (seconds)
--
-- Returns {'consumed', record}, {'used', record of the first use} or {'invalid'}.

local used = redis.call('GET', KEYS[2])
if used then
  return {'used', used}
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  return {'consumed', ARGV[2]}
end
-- Unknown, expired, or the token of another order (which stays usable for its own).
return {'invalid'}
