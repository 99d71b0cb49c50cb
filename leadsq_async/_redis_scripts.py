"""The Lua scripts behind `RedisLimiter`: every change to a shared limit, each one atomic.

The rule, for every limit in force (``calls`` per ``period``): a slot is held
from its grant until ``period`` after its release, and a slot is granted only
while every limit holds fewer than its ``calls``. So no limit ever sees more
than ``calls`` requests in any ``period``-second window, whatever the latency,
and a slot is granted the moment the last limit in its way frees one.

Redis layout, for ``key``:

- ``key``: a sorted set of the slots in flight, ``<token>`` scored by the end
  of its lease (microseconds). A live process renews its slots; a slot whose
  lease ends counts as released then, so a crashed process's calls still count.
- ``key:cooling:<period_us>``, one per limit: the released slots still held,
  as members ``<deadline_us>:<count>`` scored by their deadline. The deadlines
  of a limit of more than `BUCKETS` calls are rounded up to a multiple of
  ``period / BUCKETS``, so a set never holds more than ``BUCKETS + 2`` members
  (Redis keeps so few in its compact listpack encoding): a 250,000-a-day
  quota costs about as much memory as a 25-per-5-seconds limit. Rounding up
  only holds a slot longer, by at most 1% of its period.
- ``key:state``: a hash of ``epoch`` (made when the hash is made),
  ``pause`` (``<until_us>:<calls>:<period_us>``, the pause and the limit it is
  for) and one ``learned:<period_us>``
  (``<calls>:<expires_us>:<blocked_us>:<named_us>``, ``named_us`` when the
  server last named it) per limit learned from the server, kept a period past
  its expiry; at most `MOST_LEARNED_LIMITS` in force. It lives
  `RETENTION_SECONDS` past its last use, and past every deadline and pause it
  knows of.
- ``key:released``: a pub/sub channel; a release publishes on it, waking the
  processes that wait for a slot.

A script that finds no ``key:state`` cannot tell a new key from one Redis lost
(restarted without persistence, flushed, evicted): either way it makes a new
epoch and grants no slot for one period of the shortest limit (at most
`RECOVERY_SECONDS`), by which time every slot granted before a loss is free
again under that limit. Longer limits count again from zero. Processes
remember the epoch they saw; one that sees another knows the state was lost,
says so, and adds its slots in flight again.

Every time is Redis' own (``TIME``), unless the caller passes one (tests).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACQUIRE",
    "BUCKETS",
    "PAUSE",
    "PRELUDE",
    "RECOVERY_SECONDS",
    "RELEASE",
    "RENEW",
    "RETENTION_SECONDS",
]

BUCKETS: Final = 100
"""A limit of more calls than this keeps its deadlines in this many buckets per period."""

RETENTION_SECONDS: Final = 7 * 86_400
"""How long an unused key's state (its epoch) outlives its last use."""

RECOVERY_SECONDS: Final = 60
"""The longest a new or lost key grants nothing: limits of longer periods count from zero."""

# Shared head of every script. KEYS: the slots in flight, the state. ARGV[1]:
# the time (us), or -1 for Redis' clock; ARGV[2]: the lease (us); ARGV[3]: the
# epoch the caller knows (unused here: the caller compares); ARGV[4]: an epoch
# for a new state; ARGV[5]: n, the configured limits, then n pairs of calls and
# period (us); the script's own arguments follow, from ARGV[first].
PRELUDE: Final = (
    """
local flight, state = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
if now < 0 then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
local lease = tonumber(ARGV[2])
local configured = tonumber(ARGV[5])
local first = 6 + 2 * configured

-- Lua's tostring keeps 14 digits; times in microseconds have 16.
local function fmt(number)
  return string.format('%.0f', number)
end

-- The limits in force, by period: the configured ones, tightened or joined by
-- the learned ones that have not expired.
local calls_of = {}
local function tighten(period, calls)
  if not calls_of[period] or calls < calls_of[period] then
    calls_of[period] = calls
  end
end
local configured_of = {}
for i = 0, configured - 1 do
  local period, calls = tonumber(ARGV[7 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  tighten(period, calls)
  configured_of[period] = calls_of[period]
end

-- Learned limits, by period: {calls, expires, blocked until, named}. One that
-- expired less than a period ago is still counted (its releases kept), not
-- enforced, so that the server naming it again soon finds its count whole. A
-- value of an earlier version has no `named`: it counts as named longest ago.
local epoch, pause_until, pause_calls, pause_period = nil, 0, 0, 0
local learned, counting = {}, {}
local fields = redis.call('HGETALL', state)
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if name == 'epoch' then
    epoch = value
  elseif name == 'pause' then
    local until_, calls, period = string.match(value, '^(%d+):(%d+):(%d+)$')
    pause_until, pause_calls, pause_period = tonumber(until_), tonumber(calls), tonumber(period)
  elseif string.sub(name, 1, 8) == 'learned:' then
    local period = tonumber(string.sub(name, 9))
    local calls, expires, blocked, named = string.match(value, '^(%d+):(%d+):(%d+):?(%d*)$')
    calls, expires, blocked = tonumber(calls), tonumber(expires), tonumber(blocked)
    named = tonumber(named) or 0
    if expires > now then
      learned[period] = {calls, expires, blocked, named}
      tighten(period, calls)
    elseif expires + period > now then
      learned[period] = {calls, expires, blocked, named}
      counting[period] = calls
    else
      redis.call('HDEL', state, name)
    end
  end
end

-- The periods enforced, and the periods counted (enforced, or still counting).
local periods, counted = {}, {}
local function sort_periods()
  periods, counted = {}, {}
  for period in pairs(calls_of) do
    periods[#periods + 1] = period
    counted[#counted + 1] = period
  end
  for period in pairs(counting) do
    if not calls_of[period] then
      counted[#counted + 1] = period
    end
  end
  table.sort(periods)
  table.sort(counted)
end
sort_periods()

local function learn(period, calls, expires, blocked)
  learned[period] = {calls, expires, blocked, now}
  redis.call('HSET', state, 'learned:' .. fmt(period),
    fmt(calls) .. ':' .. fmt(expires) .. ':' .. fmt(blocked) .. ':' .. fmt(now))
end

-- A pause is extended, never shortened.
local function pause(until_, calls, period)
  if until_ > pause_until then
    pause_until, pause_calls, pause_period = until_, calls, period
    redis.call('HSET', state, 'pause', fmt(until_) .. ':' .. fmt(calls) .. ':' .. fmt(period))
  end
end

if not epoch then
  -- A new key, or one Redis lost: the slots granted before are unknown.
  epoch = ARGV[4]
  redis.call('HSET', state, 'epoch', epoch)
  pause(now + math.min(periods[1], RECOVERY_US), calls_of[periods[1]], periods[1])
end

local function cooling_key(period)
  return flight .. ':cooling:' .. fmt(period)
end

-- Count `count` slots released at `released` under the limit of `period`.
local function cool(period, released, count)
  local width = 1
  if (calls_of[period] or counting[period]) > BUCKETS then
    width = math.ceil(period / BUCKETS)
  end
  local deadline = math.ceil((released + period) / width) * width
  if deadline <= now then
    return
  end
  local cooling, score = cooling_key(period), fmt(deadline)
  local same = redis.call('ZRANGEBYSCORE', cooling, score, score)
  if same[1] then
    count = count + tonumber(string.match(same[1], ':(%d+)$'))
    redis.call('ZREM', cooling, same[1])
  end
  redis.call('ZADD', cooling, score, score .. ':' .. fmt(count))
  local last = redis.call('ZRANGE', cooling, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', cooling, fmt(math.ceil((tonumber(last[2]) - now) / 1000) + 1000))
end

-- The released slots a limit still holds: {deadline, count} by deadline, and their sum.
local function cooling(period)
  local name = cooling_key(period)
  redis.call('ZREMRANGEBYSCORE', name, '-inf', fmt(now))
  local members = redis.call('ZRANGE', name, 0, -1, 'WITHSCORES')
  local entries, total = {}, 0
  for i = 1, #members, 2 do
    local count = tonumber(string.match(members[i], ':(%d+)$'))
    entries[#entries + 1] = {tonumber(members[i + 1]), count}
    total = total + count
  end
  return entries, total
end

-- A slot whose lease ended unrenewed (its process died) counts as released then.
local ended = redis.call('ZRANGEBYSCORE', flight, '-inf', fmt(now), 'WITHSCORES')
if ended[1] then
  for i = 2, #ended, 2 do
    for _, period in ipairs(counted) do
      cool(period, tonumber(ended[i]), 1)
    end
  end
  redis.call('ZREMRANGEBYSCORE', flight, '-inf', fmt(now))
end
local in_flight = redis.call('ZCARD', flight)

-- Every script answers {its result, the epoch, the limits in force as calls,
-- period pairs by period}, and leaves each key with a time to live: the state
-- outlives every deadline it can know of (a lease, then the longest period,
-- rounded up by at most that period) and RETENTION.
local function reply(result)
  local keep = math.max(RETENTION_MS * 1000, lease + 2 * counted[#counted], pause_until - now)
  for period, entry in pairs(learned) do
    keep = math.max(keep, entry[2] + period - now, entry[3] - now)
  end
  redis.call('PEXPIRE', state, fmt(math.ceil(keep / 1000)))
  local last = redis.call('ZRANGE', flight, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIRE', flight, fmt(math.ceil((tonumber(last[2]) - now) / 1000) + 1000))
  end
  local limits = {}
  for _, period in ipairs(periods) do
    limits[#limits + 1] = calls_of[period]
    limits[#limits + 1] = period
  end
  return {result, epoch, limits}
end
""".replace("RETENTION_MS", str(RETENTION_SECONDS * 1000))
    .replace("RECOVERY_US", str(RECOVERY_SECONDS * 1_000_000))
    .replace("BUCKETS", str(BUCKETS))
)

ACQUIRE: Final = (
    PRELUDE
    + """
-- ARGV[first]: the token; ARGV[first + 1]: '1' to only look (grant nothing).
-- Answers {granted, ready_us, again_us, calls, period_us}: when not granted, a
-- slot cannot be granted sooner than ready_us from now (a slot in flight frees
-- no sooner than a period after now), it is worth asking again after again_us
-- unless a release comes first, and calls/period_us is the limit in the way
-- (0/0 for a pause that named none).
local token, looking = ARGV[first], ARGV[first + 1] == '1'
if not looking and redis.call('ZSCORE', flight, token) then
  -- granted by an earlier run whose answer was lost (a client retry)
  return reply({1, 0, 0, 0, 0})
end
local ready, again, bound_calls, bound_period = now, now, 0, 0
for _, period in ipairs(periods) do
  local entries, total = cooling(period)
  local excess = in_flight + total - calls_of[period] + 1
  local blocked = learned[period] and learned[period][3] or 0
  if blocked > now then
    if blocked > ready then
      ready, bound_calls, bound_period = blocked, calls_of[period], period
    end
    again = math.max(again, blocked)
  end
  if excess > 0 then
    local at, freed = nil, 0
    for _, entry in ipairs(entries) do
      freed = freed + entry[2]
      if freed >= excess then
        at = entry[1]
        break
      end
    end
    local retry = at
    if not at then
      -- Slots in flight must free too: a period after their release at the
      -- soonest, and they are looked at again when the first lease ends.
      at = now + period
      if entries[1] then
        at = math.max(at, entries[#entries][1])
      end
      local first_lease = redis.call('ZRANGE', flight, 0, 0, 'WITHSCORES')
      retry = math.max(at, tonumber(first_lease[2]))
    end
    if at > ready then
      ready, bound_calls, bound_period = at, calls_of[period], period
    end
    again = math.max(again, retry)
  end
end
if pause_until > ready then
  ready, bound_calls, bound_period = pause_until, pause_calls, pause_period
end
if ready <= now then
  if looking then
    return reply({0, 0, 0, 0, 0})
  end
  redis.call('ZADD', flight, fmt(now + lease), token)
  return reply({1, 0, 0, 0, 0})
end
return reply({0, ready - now, math.max(again, ready) - now, bound_calls, bound_period})
"""
)

RELEASE: Final = (
    PRELUDE
    + """
-- ARGV[first]: the token; ARGV[first + 1]: '1' if its request may have been
-- sent; ARGV[first + 2]: the channel. A used slot is held a period by every
-- limit (even one whose lease ended: counting it twice only holds more); an
-- unused one just goes.
local token, sent = ARGV[first], ARGV[first + 1] == '1'
local removed = redis.call('ZREM', flight, token)
if sent then
  for _, period in ipairs(counted) do
    cool(period, now, 1)
  end
end
if sent or removed == 1 then
  redis.call('PUBLISH', ARGV[first + 2], '')
end
return reply({})
"""
)

RENEW: Final = (
    PRELUDE
    + """
-- ARGV[first]: '1' to add the slots again (the state was lost), else '0', so
-- that a slot released meanwhile is not brought back; ARGV[first + 1...]: the
-- tokens of slots in flight.
local again = ARGV[first] == '1'
for i = first + 1, #ARGV do
  if again then
    redis.call('ZADD', flight, fmt(now + lease), ARGV[i])
  else
    redis.call('ZADD', flight, 'XX', fmt(now + lease), ARGV[i])
  end
end
return reply({})
"""
)

PAUSE: Final = (
    PRELUDE
    + """
-- ARGV[first]: how long (us); ARGV[first + 1], ARGV[first + 2]: the limit the
-- pause is for (calls, period us), or 0, 0.
pause(now + tonumber(ARGV[first]), tonumber(ARGV[first + 1]), tonumber(ARGV[first + 2]))
return reply({})
"""
)
