-- Argo CD health of Sluice policies (SecurityPolicy, ClusterSecurityPolicy).
-- Runs in gopher-lua without the string and math libraries: plain comparisons only.
local hs = { status = "Progressing", message = "Waiting for the Sluice operator to report" }
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "The operator has not yet observed this generation"
  return hs
end
local accepted = nil
local enforced = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Accepted" then accepted = c end
    if c.type == "Enforced" then enforced = c end
  end
end
if accepted ~= nil and accepted.status == "False" then
  hs.status = "Degraded"
  hs.message = accepted.message or accepted.reason or "Policy rejected"
  return hs
end
if enforced == nil then
  return hs
end
if enforced.status == "True" then
  hs.status = "Healthy"
  hs.message = enforced.message or "Enforced on every node with a selected endpoint"
  return hs
end
if enforced.reason == "EnforcementFailed" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = enforced.message or enforced.reason or "Not yet enforced on every node"
return hs
