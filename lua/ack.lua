#!lua
-- The writer's ack: acks entries whose orders are committed in MySQL, then removes from the
-- stream every entry the writers' group is done with.
--
-- Why a trim and not `XDEL` of the acked ids: `XDEL` seeks each id in its listpack node,
-- walking the node from its start, and was an eighth of Redis' CPU per stored order.
-- `XTRIM MINID` drops whole nodes at once and walks the boundary node once.
--
-- What may go: every entry older than the oldest entry still pending in the group. Entries
-- are delivered in id order, so each of those was delivered, and, no longer pending, was
-- acked (stored, dead-lettered or dropped by the writer). With nothing pending, every entry
-- up to the group's last delivered id may go. Entries acked while an older one is still
-- pending (batches commit concurrently) stay until that one is acked: for that moment the
-- stream holds them too, and the backlog (`XLEN`) counts a few batches more than are
-- waiting. The stream has one consumer group, the writers' (a second group would lose
-- entries it has not read).
--
-- KEYS[1] stream   ARGV[1] the writers' group   ARGV[2..] entry ids to ack (none: trim only)
--
-- Returns the number of entries acked.

local stream, group = KEYS[1], ARGV[1]
local acked = 0
if #ARGV > 1 then
  acked = redis.call('XACK', stream, group, unpack(ARGV, 2))
end

local keep_from
local oldest = redis.call('XPENDING', stream, group, '-', '+', 1)
if oldest[1] then
  keep_from = oldest[1][1]
else
  local last
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local name, id
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then id = g[i + 1] end
    end
    if name == group then last = id end
  end
  if not last then
    return acked
  end
  -- The id right after the last delivered one: "<ms>-<seq + 1>" (a sequence number never
  -- nears 2^53, where Lua's numbers stop being exact).
  local dash = string.find(last, '-', 1, true)
  keep_from = string.sub(last, 1, dash) .. string.format('%d', tonumber(string.sub(last, dash + 1)) + 1)
end
redis.call('XTRIM', stream, 'MINID', keep_from)
return acked
