// The monitor's view source for the static agent (manifest files, the lab and the demo): the same
// read-only surface the Kubernetes agent's incremental compiler offers (MonitorSource), taken from one
// whole compile of the files (compileParts) and the inputs it compiled.
import { type CompileParts, type PolicyInputs, policyObjects } from "../policy/compile.ts";
import type { MonitorSource } from "./view.ts";

export function staticMonitorSource(inputs: PolicyInputs, parts: CompileParts): MonitorSource {
  const byKey = new Map<string, object>();
  for (const o of policyObjects(inputs))
    byKey.set(`${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`, o);
  return {
    state: parts.result.state,
    localEndpoints: parts.endpoints,
    normalizedPolicies: parts.policies,
    universe: parts.compiler.universe,
    object: (kind, namespace, name) => byKey.get(`${kind}/${namespace ?? ""}/${name}`),
    inputs: () => inputs,
  };
}
