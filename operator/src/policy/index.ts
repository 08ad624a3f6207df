// The policy compiler's public API.
//
//   compileCluster(objects, { node }) → CompileResult { state: MapState, rules, errors }
//     objects: parsed Kubernetes manifests of any kind (Namespace, Pod, Node, NetworkPolicy,
//     SecurityPolicy, ClusterSecurityPolicy, ClusterNetworkPolicy, AdminNetworkPolicy,
//     BaselineAdminNetworkPolicy, SecurityIdentity, and *List wrappers); other kinds are ignored. Identities: the SecurityIdentity objects when there are any, otherwise allocated
//     statically (identity/static.ts) from the pods' security labels, the same in every process.
//     state.endpoints: the pods with spec.nodeName === node; state.ipcache: every address known.
//     Write state to the maps as is; report errors (they never make a partial state).
//
//   compile(inputs, options): the same from already sorted inputs with explicit identities.
//     options.allowLocalhost ("always", the default, or "policy"): whether the local node (identity
//     host: its Node object's addresses and options.hostAddresses) reaches local pods whatever the
//     policies say; the entry that allows it has rule id ReservedRuleId.LOCALHOST.
//   IncrementalCompiler: holds inputs, takes one change at a time, returns a MapDelta.
//   ReferenceEvaluator: the oracle (interprets the objects directly for one probe).
//   computeMatrix / connectivityRows: what `sluice matrix` prints.
//   Explainer: one packet's verdict with the chain of policies and rules behind it (`sluice explain`).
//   lookupVerdict / lookupIdentity: the datapath's decision, simulated.
import { type ClusterObjects, classifyObjects } from "../api/objects.ts";
import type { LabelOptions } from "../identity/labels.ts";
import { allocateStatic, type Identity } from "../identity/static.ts";
import { type CompileOptions, type CompileResult, compile, type PolicyInputs } from "./compile.ts";
import { podLabelSet, isNetworkedPod } from "./universe.ts";

export {
  type CompileError,
  type CompileOptions,
  type CompileResult,
  compile,
  type PolicyInputs,
} from "./compile.ts";
export { IncrementalCompiler, type Change } from "./incremental.ts";
export { diffStates, applyDelta, type MapDelta } from "./diff.ts";
export { ReferenceEvaluator, type ReferenceOptions } from "./reference.ts";
export { lookupIdentity, lookupVerdict } from "./lookup.ts";
export * from "./mapstate.ts";
export type { RuleRef } from "./normalize.ts";
export { computeMatrix, type MatrixOptions } from "./matrix.ts";
export { Explainer, type ExplainOptions, type Explanation } from "./explain.ts";

export function identitiesFor(objects: ClusterObjects, labelOptions?: LabelOptions): Identity[] {
  if (objects.securityIdentities.length > 0)
    return objects.securityIdentities.map((s) => ({
      id: Number(s.metadata.name),
      labels: s.spec.labels ?? {},
    }));
  const nsByName = new Map(objects.namespaces.map((n) => [n.metadata.name ?? "", n]));
  return allocateStatic(
    objects.pods.filter(isNetworkedPod).map((p) => podLabelSet(p, nsByName, labelOptions)),
  );
}

export function inputsFromObjects(
  objects: Iterable<unknown> | ClusterObjects,
  labelOptions?: LabelOptions,
): PolicyInputs {
  const o =
    Symbol.iterator in Object(objects)
      ? classifyObjects(objects as Iterable<unknown>)
      : (objects as ClusterObjects);
  return { ...o, identities: identitiesFor(o, labelOptions) };
}

export function compileCluster(
  objects: Iterable<unknown> | ClusterObjects,
  options: CompileOptions,
): CompileResult {
  return compile(inputsFromObjects(objects, options.labelOptions), options);
}
