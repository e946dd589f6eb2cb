local function handler(body)
  return body +
end
return handler
