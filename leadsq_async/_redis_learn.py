"""The Lua script behind `RedisLimiter.learn`: a limit the server named, kept to by every
process on the key, atomically; at most `MOST_LEARNED_LIMITS` of them in force, as in
process. The layout of the keys and the arguments every script takes are in
`_redis_scripts`."""

from __future__ import annotations

from typing import Final

from ._redis_scripts import PRELUDE

__all__ = ["LEARN"]

LEARN: Final = (
    PRELUDE
    + """
-- ARGV[first], ARGV[first + 1]: the limit the server named (calls, period
-- us); ARGV[first + 2]: how long a learned limit lasts (us); ARGV[first + 3]:
-- the most learned limits kept in force. As the in-process limiter's learn():
-- it tightens the limit of its period, or joins the others unless one of them
-- implies it. Answers {1} if the limits enforced changed.
local calls, period = tonumber(ARGV[first]), tonumber(ARGV[first + 1])
local expires = now + tonumber(ARGV[first + 2])

-- Whether the limits other than the learned one of `kept` imply it: the
-- configured limit of its period, or one of another.
local function implied(kept)
  local kept_calls = learned[kept][1]
  if configured_of[kept] and configured_of[kept] <= kept_calls then
    return true
  end
  for other, other_calls in pairs(calls_of) do
    if other ~= kept and other_calls * math.ceil(kept / other) <= kept_calls then
      return true
    end
  end
  return false
end

local function forget(kept)
  learned[kept] = nil
  redis.call('HDEL', state, 'learned:' .. fmt(kept))
  calls_of[kept] = configured_of[kept]
  if not calls_of[kept] then
    redis.call('DEL', cooling_key(kept)) -- its count goes with it
  end
end

-- As _slots.keep_few_learned: beyond the most learned limits in force, forget
-- first one the others imply, then the one named longest ago. Taken oldest
-- first: forgetting a limit never makes another one implied, so one pass over
-- the implied ones, then one over the rest, make the same choices.
local function keep_few()
  local most, in_force = tonumber(ARGV[first + 3]), {}
  for kept, entry in pairs(learned) do
    if entry[2] > now then
      in_force[#in_force + 1] = kept
    end
  end
  local excess = #in_force - most
  if excess <= 0 then
    return
  end
  table.sort(in_force, function(a, b)
    if learned[a][4] ~= learned[b][4] then
      return learned[a][4] < learned[b][4]
    end
    return a < b
  end)
  for _, kept in ipairs(in_force) do
    if excess > 0 and implied(kept) then
      forget(kept)
      excess = excess - 1
    end
  end
  for _, kept in ipairs(in_force) do
    if excess > 0 and learned[kept] then
      forget(kept)
      excess = excess - 1
    end
  end
  sort_periods()
end
local current, entry = calls_of[period], learned[period]
local blocked = entry and entry[3] or 0
if current then
  if calls >= current then
    if entry and entry[2] > now and calls == current then
      learn(period, calls, expires, blocked) -- named again: it lives on
    end
    return reply({0})
  end
  calls_of[period] = calls
  learn(period, calls, expires, blocked)
  keep_few()
  return reply({1})
end
for _, kept in ipairs(periods) do
  -- a window of `period` is covered by ceil(period / kept) windows of `kept`
  if calls_of[kept] * math.ceil(period / kept) <= calls then
    return reply({0})
  end
end
calls_of[period] = calls
if counting[period] then
  -- expired less than a period ago: its count is whole
  counting[period] = nil
else
  -- Count the releases a limit already counts, moved to the new period (a
  -- rounded-up deadline only holds them longer). Those it no longer counts,
  -- released before its own blocking end less its period, matter until that
  -- end plus the new period: nothing is granted before. The source is the
  -- counted limit that blocks least, and of those the shortest.
  local source, source_blocked = nil, nil
  for _, kept in ipairs(counted) do
    if kept ~= period then
      local until_ = now
      if learned[kept] then
        until_ = math.max(now, learned[kept][3])
      end
      until_ = until_ + period - kept
      if not source or until_ < source_blocked then
        source, source_blocked = kept, until_
      end
    end
  end
  blocked = source_blocked
  local entries = cooling(source)
  redis.call('DEL', cooling_key(period))
  for _, held in ipairs(entries) do
    cool(period, held[1] - source, held[2])
  end
end
learn(period, calls, expires, blocked)
sort_periods()
keep_few()
return reply({1})
"""
)
