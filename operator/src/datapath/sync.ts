// The map writer: applies a SyncPlan to the datapath maps with batch calls, and reads the maps back into
// an AppliedState (adoption after an agent restart: the new process computes a delta against what the
// kernel enforces, instead of rewriting or clearing it).
import type { EndpointState, MapState, PolicyEntry } from "../policy/mapstate.ts";
import { policyEntryKey } from "../policy/mapstate.ts";
import type { BpfAddon } from "./bpf-addon.ts";
import { cidrOfIpcacheKey, entryOfPolicy, ipcacheKeyOf, policyKeyOf, policyValueOf } from "./keys.ts";
import { enums } from "./layout.generated.ts";
import type { DatapathMaps } from "./maps.ts";
import {
  type AppliedState,
  type DesiredState,
  desiredState,
  type EndpointRecord,
  type EntrySet,
  type Generation,
  type PolicyWrite,
  planSync,
} from "./sync-plan.ts";

export interface SyncReport {
  flips: number;
  policyWritten: number;
  policyDeleted: number;
  endpointsWritten: number;
  endpointsDeleted: number;
  ipcacheWritten: number;
  ipcacheDeleted: number;
  // Endpoints of the MapState left out because their interface is unknown.
  pending: string[];
  durationMs: number;
}

// Reads every datapath map into the state the planner diffs against.
export function readApplied(maps: DatapathMaps): AppliedState {
  const ipcache = new Map<string, number>();
  for (const [k, v] of maps.ipcache.entries()) ipcache.set(cidrOfIpcacheKey(k), v.identity);
  const endpoints = new Map<number, EndpointRecord>();
  for (const [k, v] of maps.endpoints.entries()) {
    if (v.gen !== 0 && v.gen !== 1)
      throw new Error(`endpoint ifindex ${k.ifindex}: generation ${v.gen} is not 0 or 1`);
    endpoints.set(k.ifindex, {
      id: v.ep_id,
      identity: v.identity,
      policyRev: v.policy_rev,
      gen: v.gen,
      flags: v.flags,
    });
  }
  const policy = new Map<number, [Map<string, PolicyEntry>, Map<string, PolicyEntry>]>();
  for (const [k, v] of maps.policy.entries()) {
    if (k.gen !== 0 && k.gen !== 1)
      throw new Error(`policy entry of endpoint ${k.ep_id}: generation ${k.gen} is not 0 or 1`);
    let gens = policy.get(k.ep_id);
    if (!gens) {
      gens = [new Map(), new Map()];
      policy.set(k.ep_id, gens);
    }
    const e = entryOfPolicy(k, v);
    gens[k.gen].set(policyEntryKey(e), e);
  }
  return { ipcache, endpoints, policy };
}

function policyBatch(
  writes: readonly PolicyWrite[],
  withValues: boolean,
  ks: number,
  vs: number,
  maps: DatapathMaps,
) {
  const keys = new Uint8Array(writes.length * ks);
  const values = withValues ? new Uint8Array(writes.length * vs) : new Uint8Array(0);
  for (let i = 0; i < writes.length; i++) {
    const w = writes[i];
    maps.policy.key.encode(policyKeyOf(w.epId, w.gen, w.entry), keys, i * ks);
    if (withValues) maps.policy.value.encode(policyValueOf(w.entry), values, i * vs);
  }
  return { keys, values };
}

function writePolicy(maps: DatapathMaps, writes: readonly PolicyWrite[]): void {
  if (writes.length === 0) return;
  const { keys, values } = policyBatch(writes, true, maps.policy.key.size, maps.policy.value.size, maps);
  maps.policy.setManyRaw(keys, values, writes.length);
}

function deletePolicy(maps: DatapathMaps, writes: readonly PolicyWrite[]): void {
  if (writes.length === 0) return;
  const { keys } = policyBatch(writes, false, maps.policy.key.size, 0, maps);
  maps.policy.deleteManyRaw(keys, writes.length);
}

const DIRS = [enums.sl_dir.SL_DIR_INGRESS, enums.sl_dir.SL_DIR_EGRESS];
const VERDICTS = [enums.sl_verdict.SL_VERDICT_ALLOW, enums.sl_verdict.SL_VERDICT_DENY];

export interface MapSyncOptions {
  // Wait for running programs between the flip and rewriting the old generation (default true).
  // Tests of the planner may turn it off; the agent must not.
  barrier?: boolean;
}

// Owns the maps' contents for one agent. Construct with adopt(): it starts from what the kernel holds.
export class MapSync {
  readonly #addon: BpfAddon;
  readonly #maps: DatapathMaps;
  readonly #barrier: boolean;
  #applied: AppliedState;
  #stale = false;

  private constructor(addon: BpfAddon, maps: DatapathMaps, applied: AppliedState, o: MapSyncOptions) {
    this.#addon = addon;
    this.#maps = maps;
    this.#applied = applied;
    this.#barrier = o.barrier ?? true;
  }

  static adopt(addon: BpfAddon, maps: DatapathMaps, o: MapSyncOptions = {}): MapSync {
    return new MapSync(addon, maps, readApplied(maps), o);
  }

  get applied(): AppliedState {
    return this.#applied;
  }

  // Applies a compiled MapState. ifindexOf maps an endpoint to its host-side interface.
  apply(state: MapState, ifindexOf: (ep: EndpointState) => number | undefined): SyncReport {
    const { desired, pending } = desiredState(state, ifindexOf);
    return { ...this.applyDesired(desired), pending };
  }

  applyDesired(desired: DesiredState): SyncReport {
    const t0 = performance.now();
    // After a failed write we no longer know the maps' content: read it back before planning.
    if (this.#stale) {
      this.#applied = readApplied(this.#maps);
      this.#stale = false;
    }
    const m = this.#maps;
    const plan = planSync(this.#applied, desired, {
      ipcache: m.ipcache.maxEntries,
      endpoints: m.endpoints.maxEntries,
      policy: m.policy.maxEntries,
    });
    try {
      deletePolicy(m, plan.phase1.delete);
      writePolicy(m, plan.phase1.write);
      if (plan.phase2.deleteEndpoints.length > 0)
        m.endpoints.deleteMany(plan.phase2.deleteEndpoints.map((ifindex) => ({ ifindex })));
      if (plan.phase2.writeEndpoints.length > 0)
        m.endpoints.setMany(
          plan.phase2.writeEndpoints.map(([ifindex, r]) => [
            { ifindex },
            { ep_id: r.id, identity: r.identity, policy_rev: r.policyRev, gen: r.gen, flags: r.flags },
          ]),
        );
      const phase3 =
        plan.phase3.delete.length + plan.phase3.write.length + plan.phase3.deleteCounters.length > 0;
      if (plan.barrier && phase3 && this.#barrier) this.#addon.waitForPrograms();
      deletePolicy(m, plan.phase3.delete);
      writePolicy(m, plan.phase3.write);
      for (const epId of plan.phase3.deleteCounters)
        for (const dir of DIRS)
          for (const verdict of VERDICTS) m.counters.delete({ ep_id: epId, dir, verdict });
      if (plan.ipcache.delete.length > 0) m.ipcache.deleteMany(plan.ipcache.delete.map(ipcacheKeyOf));
      if (plan.ipcache.write.length > 0)
        m.ipcache.setMany(
          plan.ipcache.write.map(([cidr, identity]) => [ipcacheKeyOf(cidr), { identity, flags: 0 }]),
        );
    } catch (e) {
      this.#stale = true;
      throw e;
    }
    this.#applied = plan.result;
    return {
      flips: plan.flips,
      policyWritten: plan.phase1.write.length + plan.phase3.write.length,
      policyDeleted: plan.phase1.delete.length + plan.phase3.delete.length,
      endpointsWritten: plan.phase2.writeEndpoints.length,
      endpointsDeleted: plan.phase2.deleteEndpoints.length,
      ipcacheWritten: plan.ipcache.write.length,
      ipcacheDeleted: plan.ipcache.delete.length,
      pending: [],
      durationMs: performance.now() - t0,
    };
  }
}

// A comparable, order-independent view of an applied state (tests, `sluice` map inspection).
export interface AppliedView {
  ipcache: { cidr: string; identity: number }[];
  endpoints: {
    ifindex: number;
    id: number;
    identity: number;
    gen: Generation;
    policyRev: number;
    defaultDeny: { ingress: boolean; egress: boolean };
    entries: PolicyEntry[];
    inactiveMatches: boolean;
  }[];
  orphanPolicyIds: number[];
}

function sortedEntries(s: EntrySet): PolicyEntry[] {
  return [...s.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, e]) => e);
}

export function viewApplied(a: AppliedState): AppliedView {
  const EPF = enums.sl_endpoint_flags;
  const ids = new Set<number>();
  const endpoints = [...a.endpoints]
    .sort(([x], [y]) => x - y)
    .map(([ifindex, r]) => {
      ids.add(r.id);
      const gens = a.policy.get(r.id) ?? [new Map(), new Map()];
      const active = sortedEntries(gens[r.gen]);
      return {
        ifindex,
        id: r.id,
        identity: r.identity,
        gen: r.gen,
        policyRev: r.policyRev,
        defaultDeny: {
          ingress: (r.flags & EPF.SL_EP_DEFAULT_DENY_INGRESS) !== 0,
          egress: (r.flags & EPF.SL_EP_DEFAULT_DENY_EGRESS) !== 0,
        },
        entries: active,
        inactiveMatches: JSON.stringify(sortedEntries(gens[r.gen === 0 ? 1 : 0])) === JSON.stringify(active),
      };
    });
  return {
    ipcache: [...a.ipcache]
      .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
      .map(([cidr, identity]) => ({ cidr, identity })),
    endpoints,
    orphanPolicyIds: [...a.policy.keys()].filter((id) => !ids.has(id)).sort((x, y) => x - y),
  };
}
