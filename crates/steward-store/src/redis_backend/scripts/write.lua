local tag = ARGV[4] .. ':'
if ARGV[3] ~= '0' then
  local done = redis.call('GET', KEYS[3])
  if done and string.sub(done, 1, #tag) == tag then
    return string.sub(done, #tag + 1)
  end
end
local cap = tonumber(ARGV[5])
local function apply(vkey, mode, key, json, ttl)
  if (mode == 'c' or mode == 's') and redis.call('ZCARD', KEYS[1]) >= cap
      and redis.call('EXISTS', vkey) == 0 then
    error({err = 'TOO_MANY_KEYS'})
  end
  if mode == 'r' then
    local keys = redis.call('ZRANGE', KEYS[1], 0, -1)
    for _, k in ipairs(keys) do redis.call('DEL', ARGV[2] .. k) end
    redis.call('DEL', KEYS[1])
    note('R', '')
    return 1
  end
  local exists
  if mode == 's' then
    local old
    if ttl ~= '0' then
      old = redis.call('SET', vkey, json, 'PX', ttl, 'GET')
    else
      old = redis.call('SET', vkey, json, 'GET')
    end
    exists = old ~= false
  elseif mode == 'd' then
    exists = redis.call('DEL', vkey) == 1
  else
    exists = redis.call('EXISTS', vkey) == 1
  end
  if not exists then vanished(key) end
  if mode == 'd' then
    if not exists then return 0 end
    redis.call('ZREM', KEYS[1], key)
    note('D', key)
    return 1
  end
  if mode == 'c' and exists then return 0 end
  if mode == 'u' and not exists then return 0 end
  if not exists then
    redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), key)
  end
  if mode ~= 's' then
    if ttl ~= '0' then
      redis.call('SET', vkey, json, 'PX', ttl)
    else
      redis.call('SET', vkey, json)
    end
  end
  note('S', key, json)
  if exists then return 1 end
  return 2
end
local out, rec = {}, {}
for i = 1, (#ARGV - 5) / 4 do
  local a = 4 * i + 1
  local ok, r = pcall(apply, KEYS[3 + i], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
  if ok then
    out[i], rec[i] = r, r
  else
    if type(r) == 'table' then r = r.err end
    out[i], rec[i] = 'E' .. tostring(r), -1
  end
end
if ARGV[3] ~= '0' then
  redis.call('SET', KEYS[3], tag .. table.concat(rec, ','), 'PX', ARGV[3])
end
return out
