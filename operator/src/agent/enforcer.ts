// The node's enforcement core, shared by the static agent and the Kubernetes agent: from a view of the
// cluster's objects to the BPF maps and program attachments. The compiler is pure; this is the thin
// shell that resolves interfaces, writes maps (one delta, batched) and attaches programs.
import type { ClusterObjects } from "../api/objects.ts";
import type { Datapath } from "../datapath/programs.ts";
import { MapSync, type SyncReport } from "../datapath/sync.ts";
import type { LabelOptions } from "../identity/labels.ts";
import { type CompileError, compile, inputsFromObjects } from "../policy/index.ts";
import { attachAll, detachStale } from "./attachments.ts";
import { resolveLocalInterfaces } from "./endpoints.ts";
import type { InterfaceResolver } from "./host-interfaces.ts";

export interface EnforcerOptions {
  node: string;
  pinRoot: string;
  resolver: InterfaceResolver;
  labelOptions?: LabelOptions;
  capacity?: number;
}

export interface EnforceResult {
  sync: SyncReport;
  errors: CompileError[];
  // Endpoints whose host-side interface was not found (not yet wired): retried on the next pass.
  pending: string[];
  endpoints: number;
  detached: string[];
}

export class Enforcer {
  readonly #dp: Datapath;
  readonly #sync: MapSync;
  readonly #o: EnforcerOptions;
  // Interfaces this process has attached (or adopted and upgraded); later passes only add new ones.
  readonly #attached = new Set<string>();

  constructor(dp: Datapath, o: EnforcerOptions) {
    this.#dp = dp;
    this.#o = o;
    // Start from what the kernel enforces now (a restarted agent): the first apply is a delta.
    this.#sync = MapSync.adopt(dp.addon, dp.maps);
  }

  get datapath(): Datapath {
    return this.#dp;
  }

  async apply(objects: ClusterObjects): Promise<EnforceResult> {
    const o = this.#o;
    const local = await resolveLocalInterfaces(objects.pods, o.node, o.resolver);
    // Endpoint ids live in every map key: keep the ids the maps already hold for these interfaces.
    const idByIfindex = new Map([...this.#sync.applied.endpoints].map(([ifindex, r]) => [ifindex, r.id]));
    const endpointIds = new Map<string, number>();
    for (const [key, i] of local.byKey) {
      const id = idByIfindex.get(i.ifindex);
      if (id !== undefined) endpointIds.set(key, id);
    }
    const result = compile(inputsFromObjects(objects, o.labelOptions), {
      node: o.node,
      capacity: o.capacity,
      labelOptions: o.labelOptions,
      endpointIds,
    });
    // Maps first, then programs: a program never runs on an interface without its endpoint entry.
    const sync = this.#sync.apply(result.state, (ep) => local.byKey.get(ep.key)?.ifindex);
    const compiled = new Set(result.state.endpoints.map((e) => e.key));
    const wired = [...local.byKey].filter(([key]) => compiled.has(key)).map(([, i]) => i);
    attachAll(
      this.#dp,
      o.pinRoot,
      wired.filter((i) => !this.#attached.has(`${i.ifname}#${i.ifindex}`)),
    );
    this.#attached.clear();
    for (const i of wired) this.#attached.add(`${i.ifname}#${i.ifindex}`);
    const detached = detachStale(this.#dp, o.pinRoot, new Set(wired.map((i) => i.ifname)));
    return {
      sync,
      errors: result.errors,
      pending: [...local.pending, ...sync.pending],
      endpoints: wired.length,
      detached: detached.map((l) => `${l.ifname}-${l.hook}`),
    };
  }
}
