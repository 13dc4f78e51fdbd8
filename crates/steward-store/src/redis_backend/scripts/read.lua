local mode = ARGV[3]
if mode == 'g' then
  local v = redis.call('GET', KEYS[2])
  if not v then vanished(ARGV[4]) end
  return v
end
local keys = redis.call('ZRANGE', KEYS[1], 0, -1)
local out, n, gone = {}, 0, 0
for _, k in ipairs(keys) do
  local v
  if mode == 'e' or mode == 't' then
    v = redis.call('GET', ARGV[2] .. k)
  else
    v = redis.call('EXISTS', ARGV[2] .. k) == 1
  end
  if v then
    n = n + 1
    if mode == 'e' or mode == 't' then
      out[#out + 1] = k
      out[#out + 1] = v
      if mode == 't' then out[#out + 1] = tostring(redis.call('PTTL', ARGV[2] .. k)) end
    elseif mode == 'k' then
      out[#out + 1] = k
    end
  else
    vanished(k)
    gone = gone + 1
  end
end
if mode == 'n' then return n end
if mode == 's' then return gone end
return out
