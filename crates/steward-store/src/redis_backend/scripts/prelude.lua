local function note(op, key, payload)
  redis.call('PUBLISH', ARGV[1], op .. #key .. ':' .. key .. (payload or ''))
end
local function vanished(k)
  if redis.call('ZREM', KEYS[1], k) == 1 then note('X', k) end
end
