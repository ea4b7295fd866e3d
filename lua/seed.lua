#!lua
-- Seeds (or re-seeds) one activity's sale state: written by the admin endpoints only.
--
-- KEYS[1] meta   KEYS[2] stock   KEYS[3] stream (all under the activity's hash tag)
-- ARGV[1] name   ARGV[2] total stock   ARGV[3] starts_ms   ARGV[4] ends_ms
-- ARGV[5] per-user limit   ARGV[6] units sold according to MySQL   ARGV[7] writer group
-- ARGV[8] invalidation channel   ARGV[9] activity id
-- ARGV[10] '1' for a rebuild (src/recovery): ARGV[6] is then the units taken, counted from
--          the orders while the sale was paused, and replaces what Redis believed
-- ARGV[11] price of one unit in cents   ARGV[12] payment window (seconds): the terms an
--          order accepted now will be stored with (shown while it is pending)
--
-- Returns {'ok', remaining}, {'below_sold', accepted} or {'paused'}.

local meta, stock, stream = KEYS[1], KEYS[2], KEYS[3]
local total = tonumber(ARGV[2])

-- Units already taken. While Redis holds the sale's state, it is the seeded total minus
-- what is left: this counts orders accepted but not yet persisted, which MySQL's `sold`
-- does not know yet. Without Redis state (first seed, or Redis lost its data) MySQL's
-- `sold` is all there is.
local rebuild = ARGV[10] == '1'
-- A rebuild in progress owns the state: an ordinary re-seed now would re-open the sale before
-- the buyers are restored, with a stock computed from the state being replaced.
if not rebuild and redis.call('HEXISTS', meta, 'paused') == 1 then
  return {'paused'}
end
local accepted
local old_total = redis.call('HGET', meta, 'total')
local left = redis.call('GET', stock)
if rebuild then
  accepted = tonumber(ARGV[6])
elseif old_total and left then
  accepted = tonumber(old_total) - tonumber(left)
else
  accepted = tonumber(ARGV[6])
end

-- Never set the stock below what buyers already hold: that would oversell on paper.
if total < accepted then
  return {'below_sold', tostring(accepted)}
end

redis.call('HSET', meta, 'name', ARGV[1], 'total', total, 'starts_ms', ARGV[3],
  'ends_ms', ARGV[4], 'limit', ARGV[5], 'price', ARGV[11], 'window', ARGV[12])
-- Re-opens the sale if a rebuild had paused it.
redis.call('HDEL', meta, 'paused')
redis.call('SET', stock, total - accepted)

-- The consumer group must exist before the first purchase appends to the stream, so the
-- writer reads every entry from the start ('0'). BUSYGROUP means it exists already.
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', stream, ARGV[7], '0', 'MKSTREAM')
if not ok and not string.find(tostring(err), 'BUSYGROUP', 1, true) then
  return redis.error_reply(tostring(err))
end

-- Tell every service instance to drop its local sold-out view of this activity: it may be
-- sellable again, so its set of buyers is no longer final (see src/gate/sold_out.rs).
-- Published from inside the script, so the message precedes any purchase that follows.
redis.call('PUBLISH', ARGV[8], ARGV[9])
return {'ok', tostring(total - accepted)}
