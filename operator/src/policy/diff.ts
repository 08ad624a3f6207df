// Map deltas: what the agent writes to go from one MapState to another.
import { sameOutcome } from "./audit.ts";
import { compareEntries } from "./compile.ts";
import {
  type EndpointState,
  type IpcacheEntry,
  type MapState,
  type PolicyEntry,
  policyEntryKey,
} from "./mapstate.ts";

export interface EndpointDelta {
  key: string;
  id: number;
  identity: number;
  defaultDeny: { ingress: boolean; egress: boolean };
  // As EndpointPolicy.auditDefaultDeny: absent where the Audit policies leave the defaults alone.
  auditDefaultDeny?: { ingress: boolean; egress: boolean };
  // Entries to write (new, or changed value under an existing key) and keys to delete.
  upsert: PolicyEntry[];
  remove: PolicyEntry[];
}

export interface MapDelta {
  ipcacheUpsert: IpcacheEntry[];
  ipcacheRemove: IpcacheEntry[];
  endpoints: EndpointDelta[];
  removedEndpoints: string[];
}

export function isEmptyDelta(d: MapDelta): boolean {
  return (
    d.ipcacheUpsert.length + d.ipcacheRemove.length + d.endpoints.length + d.removedEndpoints.length === 0
  );
}

// The defaults the Audit policies would give, in full (equal to defaultDeny when they change nothing).
function auditDefaults(p: EndpointState["policy"]): string {
  const d = p.auditDefaultDeny ?? p.defaultDeny;
  return `${d.ingress}|${d.egress}`;
}

export function diffEndpoint(
  before: EndpointState | undefined,
  after: EndpointState,
): EndpointDelta | undefined {
  const old = new Map((before?.policy.entries ?? []).map((e) => [policyEntryKey(e), e]));
  const upsert: PolicyEntry[] = [];
  const keep = new Set<string>();
  for (const e of after.policy.entries) {
    const k = policyEntryKey(e);
    keep.add(k);
    const o = old.get(k);
    if (!o || !sameOutcome(o, e)) upsert.push(e);
  }
  const remove = [...old.entries()].filter(([k]) => !keep.has(k)).map(([, e]) => e);
  const sameHeader =
    before &&
    before.id === after.id &&
    before.identity === after.identity &&
    before.policy.defaultDeny.ingress === after.policy.defaultDeny.ingress &&
    before.policy.defaultDeny.egress === after.policy.defaultDeny.egress &&
    auditDefaults(before.policy) === auditDefaults(after.policy);
  if (sameHeader && upsert.length === 0 && remove.length === 0) return undefined;
  return {
    key: after.key,
    id: after.id,
    identity: after.identity,
    defaultDeny: { ...after.policy.defaultDeny },
    ...(after.policy.auditDefaultDeny ? { auditDefaultDeny: { ...after.policy.auditDefaultDeny } } : {}),
    upsert,
    remove,
  };
}

// Both sides sorted by cidr (as every universe and applyDelta give them): one merge walk, no maps of
// the 50,000 entries a large cluster has. Unsorted input takes the maps.
export function diffIpcache(before: readonly IpcacheEntry[], after: readonly IpcacheEntry[]) {
  if (sortedByCidr(before) && sortedByCidr(after)) {
    const ipcacheUpsert: IpcacheEntry[] = [];
    const ipcacheRemove: IpcacheEntry[] = [];
    let i = 0;
    let j = 0;
    while (i < before.length || j < after.length) {
      const b = before[i];
      const a = after[j];
      if (a === undefined || (b !== undefined && b.cidr < a.cidr)) {
        ipcacheRemove.push(b);
        i++;
      } else if (b === undefined || a.cidr < b.cidr) {
        ipcacheUpsert.push(a);
        j++;
      } else {
        if (a.identity !== b.identity) ipcacheUpsert.push(a);
        i++;
        j++;
      }
    }
    return { ipcacheUpsert, ipcacheRemove };
  }
  const old = new Map(before.map((e) => [e.cidr, e.identity]));
  const now = new Map(after.map((e) => [e.cidr, e.identity]));
  return {
    ipcacheUpsert: after.filter((e) => old.get(e.cidr) !== e.identity),
    ipcacheRemove: before.filter((e) => !now.has(e.cidr)),
  };
}

function sortedByCidr(entries: readonly IpcacheEntry[]): boolean {
  for (let i = 1; i < entries.length; i++) if (!(entries[i - 1].cidr < entries[i].cidr)) return false;
  return true;
}

export function diffStates(before: MapState, after: MapState): MapDelta {
  const old = new Map(before.endpoints.map((e) => [e.key, e]));
  const now = new Set(after.endpoints.map((e) => e.key));
  const endpoints: EndpointDelta[] = [];
  for (const e of after.endpoints) {
    const d = diffEndpoint(old.get(e.key), e);
    if (d) endpoints.push(d);
  }
  return {
    ...diffIpcache(before.ipcache, after.ipcache),
    endpoints,
    removedEndpoints: before.endpoints.filter((e) => !now.has(e.key)).map((e) => e.key),
  };
}

export function applyDelta(state: MapState, delta: MapDelta): MapState {
  const ipcache = new Map(state.ipcache.map((e) => [e.cidr, e.identity]));
  for (const e of delta.ipcacheRemove) ipcache.delete(e.cidr);
  for (const e of delta.ipcacheUpsert) ipcache.set(e.cidr, e.identity);
  const eps = new Map(state.endpoints.map((e) => [e.key, e]));
  for (const k of delta.removedEndpoints) eps.delete(k);
  for (const d of delta.endpoints) {
    const entries = new Map((eps.get(d.key)?.policy.entries ?? []).map((e) => [policyEntryKey(e), e]));
    for (const e of d.remove) entries.delete(policyEntryKey(e));
    for (const e of d.upsert) entries.set(policyEntryKey(e), e);
    eps.set(d.key, {
      key: d.key,
      id: d.id,
      identity: d.identity,
      policy: {
        defaultDeny: { ...d.defaultDeny },
        ...(d.auditDefaultDeny ? { auditDefaultDeny: { ...d.auditDefaultDeny } } : {}),
        entries: [...entries.values()].sort(compareEntries),
      },
    });
  }
  return {
    ipcache: [...ipcache.entries()]
      .map(([cidr, identity]) => ({ cidr, identity }))
      .sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0)),
    endpoints: [...eps.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
  };
}
