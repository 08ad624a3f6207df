// Node-wide fail-closed (issue 14 §2): when the policy every endpoint needs does not fit in the node's
// policy maps, some endpoints enforce their fail-closed policy instead, so that the write fits and no
// endpoint is left with an empty, half-written or stale policy; when there are more endpoints than the
// endpoint map's places, the new ones past them are refused (admitEndpoints) and the rest of the write
// goes on. Pure: it only plans.
//
// Which endpoints: those whose policy is already in the maps as it should be keep it (failing them
// would drop their traffic for another endpoint's growth); endpoints of at most the fail-closed
// policy's size cost nothing to admit; the others are admitted smallest first (then by key), as many
// as fit. The count is found by bisection over planSync, so the check is exactly the writer's own
// (both generations, the peak within a write). An endpoint failed closed is tried again with its own
// policy at every write: when capacity returns it recovers without a restart.
import { type PolicyEntry, ReservedRuleId } from "../../policy/mapstate.ts";
import { enums } from "../codec/layout.generated.ts";
import { MapCapacityError } from "../kernel/typed-map.ts";
import {
  type AppliedState,
  type Capacities,
  type DesiredEndpoint,
  type DesiredState,
  type EntrySet,
  planSync,
  sameEntries,
  type SyncPlan,
} from "./sync-plan.ts";

const EPF = enums.sl_endpoint_flags;
// Deny both ways, audited alike: a failed-closed endpoint reports no audit outcome.
const CLOSED_FLAGS =
  EPF.SL_EP_DEFAULT_DENY_INGRESS |
  EPF.SL_EP_DEFAULT_DENY_EGRESS |
  EPF.SL_EP_AUDIT_DENY_INGRESS |
  EPF.SL_EP_AUDIT_DENY_EGRESS;

// An endpoint that enforces its fail-closed policy because its own does not fit the node's policy map.
export interface FailedClosedEndpoint {
  key: string;
  // Entries its own policy needs in the policy map: both generations.
  needed: number;
  // Entries left for it once every other endpoint's are counted, and the map's capacity.
  available: number;
  capacity: number;
}

// An endpoint the node's endpoint map cannot hold: nothing is written for it and no program is attached
// on its interface, and sluice-cni fails its sandbox with this reason (the runtime retries it), so its
// pod does not start until another endpoint goes. Endpoints already in the map keep their place.
export interface RefusedEndpoint {
  key: string;
  // Endpoints of the node that want a place, and the map's capacity.
  wanted: number;
  capacity: number;
}

export interface FittedPlan {
  plan: SyncPlan;
  // What the plan writes: the desired state with the failed endpoints' fail-closed policy.
  desired: DesiredState;
  failedClosed: FailedClosedEndpoint[];
  refused: RefusedEndpoint[];
}

const byKey = (a: DesiredEndpoint, b: DesiredEndpoint) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

// The endpoints the endpoint map can hold: those in it already, then new ones by key, up to capacity.
export function admitEndpoints(
  applied: AppliedState,
  desired: DesiredState,
  capacity: number,
): { desired: DesiredState; refused: RefusedEndpoint[] } {
  if (desired.endpoints.size <= capacity) return { desired, refused: [] };
  const held: DesiredEndpoint[] = [];
  const fresh: DesiredEndpoint[] = [];
  for (const d of desired.endpoints.values())
    (applied.endpoints.get(d.ifindex)?.id === d.id ? held : fresh).push(d);
  const order = [...held.sort(byKey), ...fresh.sort(byKey)];
  const endpoints = new Map<number, DesiredEndpoint>();
  for (const d of order.slice(0, capacity)) endpoints.set(d.ifindex, d);
  const wanted = desired.endpoints.size;
  return {
    desired: { ...desired, endpoints },
    refused: order.slice(capacity).map((d) => ({ key: d.key, wanted, capacity })),
  };
}

export function describeRefused(r: RefusedEndpoint): string {
  return `endpoint ${r.key}: the node's endpoint map is full (${r.wanted} endpoints want its ${r.capacity} places); it is not enforced, and sluice-cni keeps its pod from starting until a place frees`;
}

// The endpoint as it enforces when failed closed: deny both ways, the fail-closed entries (without
// them: its own allow-localhost entries), its addresses and their check unchanged.
function closedVariant(d: DesiredEndpoint, closed: EntrySet | undefined): DesiredEndpoint {
  let entries = closed;
  if (!entries) {
    const own = new Map<string, PolicyEntry>();
    for (const [k, e] of d.entries)
      if (e.ruleId === ReservedRuleId.LOCALHOST && e.direction === "ingress") own.set(k, e);
    entries = own;
  }
  const { auditSlot: _none, ...rest } = d;
  return { ...rest, flags: CLOSED_FLAGS | (d.flags & EPF.SL_EP_SOURCE_CHECK), entries };
}

function isPolicyOverflow(e: unknown): e is MapCapacityError {
  return e instanceof MapCapacityError && e.map === "policy";
}

// planSync of the endpoints the endpoint map can hold (admitEndpoints), and when the policy maps cannot
// hold every endpoint's policy, the plan with as many endpoints failed closed as it takes. Other
// capacity errors (ipcache, sources) and a policy map too small even with every changed endpoint
// closed are thrown as planSync throws them.
export function planWithinCapacity(applied: AppliedState, wanted: DesiredState, cap: Capacities): FittedPlan {
  const { desired, refused } = admitEndpoints(applied, wanted, cap.endpoints);
  let overflow: MapCapacityError;
  try {
    return { plan: planSync(applied, desired, cap), desired, failedClosed: [], refused };
  } catch (e) {
    if (!isPolicyOverflow(e)) throw e;
    overflow = e;
  }
  const closed = desired.failClosed;
  const always: DesiredEndpoint[] = [];
  const kept: DesiredEndpoint[] = [];
  const others: DesiredEndpoint[] = [];
  for (const d of desired.endpoints.values()) {
    const variant = closedVariant(d, closed);
    if (d.entries.size <= variant.entries.size) always.push(d);
    else if (enforcedAsIs(applied, d)) kept.push(d);
    else others.push(d);
  }
  kept.sort(byKey);
  others.sort((a, b) => a.entries.size - b.entries.size || byKey(a, b));
  const order = [...kept, ...others];
  const attempt = (k: number): FittedPlan | undefined => {
    const endpoints = new Map<number, DesiredEndpoint>();
    for (const d of always) endpoints.set(d.ifindex, d);
    order.forEach((d, i) => {
      endpoints.set(d.ifindex, i < k ? d : closedVariant(d, closed));
    });
    const fitted: DesiredState = { ...desired, endpoints };
    try {
      return { plan: planSync(applied, fitted, cap), desired: fitted, failedClosed: [], refused };
    } catch (e) {
      if (isPolicyOverflow(e)) return undefined;
      throw e;
    }
  };
  let best = attempt(0);
  if (!best) throw overflow;
  // Bisection: admitting more endpoints never takes fewer entries (each admitted one is bigger than
  // its closed form), so the prefixes that fit are those below some k.
  let lo = 0;
  let hi = order.length;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    const p = attempt(mid);
    if (p) {
      lo = mid;
      best = p;
    } else hi = mid;
  }
  let total = 0;
  for (const d of best.desired.endpoints.values()) total += 2 * d.entries.size;
  best.failedClosed = order.slice(lo).map((d) => {
    const own = best!.desired.endpoints.get(d.ifindex)?.entries.size ?? 0;
    return {
      key: d.key,
      needed: 2 * d.entries.size,
      available: cap.policy - (total - 2 * own),
      capacity: cap.policy,
    };
  });
  return best;
}

// Whether the maps enforce exactly this endpoint's policy already.
function enforcedAsIs(applied: AppliedState, d: DesiredEndpoint): boolean {
  const a = applied.endpoints.get(d.ifindex);
  if (!a || a.id !== d.id || a.flags !== d.flags) return false;
  const gens = applied.policy.get(d.id);
  return gens !== undefined && sameEntries(gens[a.gen], d.entries);
}

export function describeFailedClosed(f: FailedClosedEndpoint): string {
  return `endpoint ${f.key} needs ${f.needed} entries in the node's policy map (both generations), ${f.available} of its ${f.capacity} are left; it fails closed`;
}
