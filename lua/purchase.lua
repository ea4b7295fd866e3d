#!lua
-- The purchase gate: every decision of a buy-now request, taken atomically in Redis.
--
-- Redis runs a script without interleaving any other command, so the checks below and the
-- writes at the end see one consistent state: two buyers cannot both take the last unit
-- (I1), one buyer cannot get two orders (I2), and a retry sees the first attempt's record
-- (I3). The `#!lua` shebang (no flags) makes Redis refuse the whole script up front when it
-- is out of memory, instead of failing half-way through the writes.
--
-- Purchases arrive in batches (src/gate/group_commit.rs): the purchases of one activity that
-- queued while its previous call was in flight come together, and are decided here one
-- after the other, each exactly as if it came alone — a later one sees the earlier ones'
-- accepts. What all of them read the same (the activity's meta, the clock, the stock and the
-- stream's length) is read once per call and kept up to date here. One purchase's error
-- (say, a key of the wrong type) is its own answer: the others are decided all the same.
--
-- The stock and the buyers are written once per call, after the last purchase: the stock
-- as `left` ended, the buyers accepted in this call (kept in `added`, which the
-- one-order-per-user check reads before the hash). Nobody can see the difference — no other
-- command runs before the script ends — and each accept costs two commands fewer. Neither
-- write can fail: each key was read as the right type earlier in this call (the stock by
-- every accept, the buyers hash by every purchase whose buyer was not in `added`).
--
-- All keys share the hash tag {a:<activity_id>}, so the script is valid on Redis Cluster.
--
-- KEYS[1] meta     hash   name, total, starts_ms, ends_ms, limit (written by the admin seed);
--                         `paused` while an operator rebuilds the state (src/recovery)
-- KEYS[2] stock    string units left; missing means "not seeded": never sellable
-- KEYS[3] buyers   hash   user_id -> "order_id:quantity:created_ms"
-- KEYS[4] stream   stream order intents, drained by the writer's consumer group; the
--                         field's name (F_INTENT) is defined by src/gate/stream.rs, which
--                         puts it on the line after `#!lua` when the script is loaded
-- KEYS[4 + i]      string purchase i's idempotency record,
--                         "fingerprint|order_id:quantity:created_ms" with a TTL
--
-- ARGV[1] idempotency TTL (seconds)
-- ARGV[2] most entries the stream may hold (the writer's backlog); 0 means no bound
-- then five per purchase i, from ARGV[3 + 5 * (i - 1)]: user_id, quantity, fingerprint,
-- candidate order id, idempotency key (kept on the order row)
--
-- Returns one reply per purchase, in order: a flat array whose first element names the
-- outcome (see src/gate/mod.rs), or {'error', message}.

local meta, stock, buyers, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, bound = ARGV[1], tonumber(ARGV[2])

-- Read once per call, when a purchase first needs them (a call of replays reads none).
-- `now_ms` is Redis' clock as text, formatted once: Lua formats a number with printf on
-- every concatenation or command argument, a measurable part of the script's CPU.
local m, starts, ends, limit, now, now_ms, left, queued
-- This call's accepts: user_id -> record (written to the buyers hash at the end; any entry
-- means the stock changed too).
local added = {}

local function decide(i)
  local a = 3 + 5 * (i - 1)
  local user, qty_text, fp, order_id, idem_key = ARGV[a], ARGV[a + 1], ARGV[a + 2],
    ARGV[a + 3], ARGV[a + 4]
  local qty = tonumber(qty_text)
  local idem = KEYS[4 + i]

  -- 1. Idempotency first: a key seen before decides the answer whatever the sale's state
  --    is now (sold out, ended), because the buyer may have lost the first answer.
  --    Only a buyer can have a record: a record is written only by an accept, which notes
  --    its buyer in the same call (in `added`, then the buyers hash), and a buyer is never
  --    removed (a cancelled or expired order keeps the slot; a rebuild writes the buyer
  --    before the record). So the buyer is looked up first, and the record only for a
  --    buyer: a new buyer's purchase, by far the most common, costs one command less.
  local existing = added[user] or redis.call('HGET', buyers, user)
  if existing then
    local seen = redis.call('GET', idem)
    if seen then
      local sep = string.find(seen, '|', 1, true)
      if string.sub(seen, 1, sep - 1) == fp then
        -- Same key, same payload: replay the accepted order.
        return {'replay', string.sub(seen, sep + 1)}
      end
      -- Same key, different payload: a client bug; never reinterpret the key.
      return {'key_reused'}
    end
  end

  -- 2. The activity must have been seeded by the admin endpoint. Without its meta hash we
  --    know nothing about it (unknown, or Redis lost its data): the caller decides which.
  if not m then
    m = redis.call('HMGET', meta, 'starts_ms', 'ends_ms', 'limit', 'paused')
    starts, ends, limit = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
  end
  if not m[1] then
    return {'not_found'}
  end
  -- A rebuild is reading the orders to restore buyers and stock: nothing may be accepted
  -- (or refused as a repeat buyer) from the state being replaced. Replays were answered above
  -- from their own records; everything else is "not sellable right now".
  if m[4] then
    return {'not_seeded'}
  end

  -- 3. Quantity above the activity's per-user limit is bad input, answered before any write.
  if qty > limit then
    return {'quantity_over_limit', m[3]}
  end

  -- 4. The window, on Redis' own clock so that every service instance agrees.
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    now_ms = string.format('%d', now)
  end
  if now < starts then
    return {'not_started'}
  end
  if now >= ends then
    return {'ended'}
  end

  -- 5. One order per user per activity: a second key from the same buyer gets the order it
  --    already has, not a second one.
  if existing then
    return {'already_purchased', existing}
  end

  -- 6. Stock. A missing key means the stock was never seeded (or Redis lost it): refuse,
  --    never treat it as zero-then-decrement (which would go negative) or as unlimited.
  --    (Read once per call; the accepts below keep `left` up to date, written at the end.)
  if not left then
    left = tonumber(redis.call('GET', stock))
    if not left then
      return {'not_seeded'}
    end
  end
  if left < qty then
    -- Not enough for this quantity: nothing changes, the stock stays as it is.
    return {'sold_out', left}
  end

  -- 7. The writer's backlog. The stream holds the accepted orders not yet in MySQL (and,
  --    for a moment, batches acked while an older one commits: lua/ack.lua). Above the
  --    bound (MySQL down or too slow) the sale pauses with 503 rather than accept orders
  --    it may not persist before Redis' loss window closes. Checked after the answers that
  --    need no write, so replays, sold-out and already-purchased answers go on while the
  --    sale is paused.
  if bound > 0 then
    queued = queued or redis.call('XLEN', stream)
    if queued >= bound then
      return {'backlog_full'}
    end
  end

  -- 8. Accept: append the order intent to the stream, take the units and note the buyer
  --    (both written at the end of the call), record the idempotency answer. The writer
  --    persists the intent; the stream keeps it until acked (I4). The stream entry first:
  --    every read above succeeded on its key, so the stream (not read when there is no
  --    bound) is the one key whose write could still fail, and a failed first write leaves
  --    nothing half done (Redis does not undo a script's writes).
  --    The entry is one field, "record:user_id:idempotency_key" (src/gate/stream.rs).
  local record = order_id .. ':' .. qty_text .. ':' .. now_ms
  redis.call('XADD', stream, '*', F_INTENT, record .. ':' .. user .. ':' .. idem_key)
  left = left - qty
  added[user] = record
  redis.call('SET', idem, fp .. '|' .. record, 'EX', ttl)
  if queued then
    queued = queued + 1
  end
  return {'accepted', record, left}
end

local replies = {}
for i = 1, (#ARGV - 2) / 5 do
  local ok, reply = pcall(decide, i)
  if not ok then
    -- A failed redis.call raises a table holding `err`; anything else is a script bug.
    reply = {'error', type(reply) == 'table' and reply.err or tostring(reply)}
  end
  replies[i] = reply
end

-- The call's accepts, written once (see the top): the stock first, so that an accepted
-- unit is never sellable again, then the buyers.
if next(added) then
  redis.call('SET', stock, string.format('%d', left), 'KEEPTTL')
  local pairs_ = {}
  for user, record in pairs(added) do
    pairs_[#pairs_ + 1] = user
    pairs_[#pairs_ + 1] = record
  end
  redis.call('HSET', buyers, unpack(pairs_))
end
return replies
