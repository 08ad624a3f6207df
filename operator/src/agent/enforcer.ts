// The node's enforcement core, shared by the static agent and the Kubernetes agent: from a view of the
// cluster's objects to the BPF maps and program attachments. The compiler is pure; this is the thin
// shell that resolves interfaces, writes maps (one delta, batched) and attaches programs. apply()
// compiles the whole node (static agent); write() takes a state compiled elsewhere (the Kubernetes
// agent's incremental compiler). It also hands the writer each endpoint's own addresses, which the
// datapath checks what the pod sends against (the compiler's state carries none).
import type { ClusterObjects } from "../api/objects.ts";
import type { Datapath } from "../datapath/kernel/programs.ts";
import { attachAll, detachStale } from "../datapath/kernel/attachments.ts";
import { describeMigrationError, LayoutMigration, type MigrationReport } from "../datapath/migrate.ts";
import { describeResizeError, type ResizeReport } from "../datapath/kernel/map-resize.ts";
import { MapSync, type MapUsage, type PolicyBudget, type SyncReport } from "../datapath/writer/sync.ts";
import type { LabelOptions } from "../identity/labels.ts";
import { countsOf, type RuleCounterRow as StatsCounterRow } from "../stats/rule-stats.ts";
import { type AllowLocalhost, type CompileError, inputsFromObjects, type MapState } from "../policy/index.ts";
import { type CompileParts, compileParts, type PolicyInputs } from "../policy/compile.ts";
import type { EndpointState } from "../policy/mapstate.ts";
import { podIps } from "../policy/universe.ts";
import { podKey } from "../api/k8s.ts";
import { DesiredStateCache } from "./desired-cache.ts";
import { localPods, resolveLocalInterfaces } from "./endpoints.ts";
import { writeHostRouting } from "./datapath-config.ts";
import type { HostInterface, InterfaceResolver } from "./host-interfaces.ts";
import { type HostRoutingDecision, type HostRoutingGate, KERNEL_ROUTING } from "./host-routing.ts";

// A local endpoint's host-side interface, and its pod's addresses: all the pod may send from (the
// datapath drops anything else it sends). The caller knows them: the compiler enforces only pods that
// have addresses, and these are the ones it compiled the pod with.
export interface EndpointInterface extends HostInterface {
  addresses: readonly string[];
}

export interface EnforcerOptions {
  node: string;
  resolver: InterfaceResolver;
  labelOptions?: LabelOptions;
  // Most policy entries one endpoint may have (CompileOptions.capacity).
  capacity?: number;
  // CompileOptions.allowLocalhost (default "always").
  allowLocalhost?: AllowLocalhost;
  // The node's own addresses (node-addresses.ts), read again at every apply.
  hostAddresses?: () => readonly string[];
  // Whether the datapath routes between the node's pods itself (host-routing.ts); absent: it never does.
  hostRouting?: HostRoutingGate;
}

export interface EnforceResult {
  sync: SyncReport;
  errors: CompileError[];
  // Endpoints whose host-side interface was not found (not yet wired): retried on the next pass.
  pending: string[];
  endpoints: number;
  detached: string[];
  // The first write on a node set up by an agent of an older layout: what was carried over, or why
  // nothing was.
  migrated?: MigrationReport;
  migrationError?: string;
  // The first write on maps grown beyond their pins (datapath/kernel/map-resize.ts): what was grown,
  // or why nothing was.
  resized?: ResizeReport;
  resizeError?: string;
  // Live replacement: attachments of an earlier agent whose program this write swapped in place,
  // and how long attaching (swaps included) and the layout migration or map resize took.
  swapped: number;
  attachMs: number;
  migrationMs: number;
  // Host routing in BPF as this write left it, when it changed (the first write reports it too).
  hostRouting?: HostRoutingDecision;
}

export interface ApplyResult extends EnforceResult {
  inputs: PolicyInputs;
  parts: CompileParts;
}

export class Enforcer {
  readonly #dp: Datapath;
  readonly #sync: MapSync;
  readonly #o: EnforcerOptions;
  // Interfaces this process has attached (or adopted and upgraded); later passes only add new ones.
  readonly #attached = new Set<string>();
  // The maps' desired form of endpoints the compiler left untouched is kept between passes.
  readonly #desired = new DesiredStateCache();
  // Each endpoint with its addresses, kept while neither changes: the desired cache reuses what it built
  // for the same object.
  readonly #addressed = new Map<string, { source: EndpointState; addresses: string; ep: EndpointState }>();
  // Until the first write: the maps of an older layout whose programs still run on the links.
  #migration: LayoutMigration | undefined;
  #migrationError: string | undefined;
  #resizeReported = false;
  // The host routing decision last written (undefined: none yet).
  #hostRouting: HostRoutingDecision | undefined;

  constructor(dp: Datapath, o: EnforcerOptions) {
    this.#dp = dp;
    this.#o = o;
    // Start from what the kernel enforces now (a restarted agent): the first apply is a delta.
    this.#sync = MapSync.adopt(dp.addon, dp.maps);
    // Conntrack of the old programs, before they are swapped for these (the rest after the swap). A
    // node whose old state cannot be read is still enforced: only the carried-over state is lost.
    try {
      this.#migration = LayoutMigration.open(dp);
      this.#migration?.copyConntrack(dp.maps);
    } catch (e) {
      this.#migration?.close();
      this.#migration = undefined;
      this.#migrationError = describeMigrationError(e);
    }
  }

  get datapath(): Datapath {
    return this.#dp;
  }

  // How full each map is, from the writer's own bookkeeping (metrics read it at scrape time).
  mapUsage(): MapUsage[] {
    return this.#sync.usage();
  }

  // The datapath's per-rule counters, one row per slot, named by endpoint key (sluice stats, GET
  // /v1/rules). A slot read back after a restart names its endpoint by id until the first write.
  ruleCounters(): { rows: StatsCounterRow[]; uncounted: number } {
    const rows = this.#sync.ruleCounterTable().map((r) => ({
      endpoint: r.endpointKey ?? `endpoint ${r.epId}`,
      direction: r.direction,
      ruleId: r.ruleId,
      audit: r.audit,
      ...countsOf(r),
    }));
    return { rows, uncounted: this.#sync.uncountedRules };
  }

  // How much of the policy maps' budget the enforced policy takes (the figure the writer checks).
  policyBudget(): PolicyBudget {
    return this.#sync.policyBudget();
  }

  // Endpoint ids live in every map key: the ids the maps already hold for these interfaces, by
  // endpoint key (a restarted agent keeps them, so its first write is a delta).
  appliedEndpointIds(interfaces: ReadonlyMap<string, HostInterface>): Map<string, number> {
    const idByIfindex = new Map([...this.#sync.applied.endpoints].map(([ifindex, r]) => [ifindex, r.id]));
    const endpointIds = new Map<string, number>();
    for (const [key, i] of interfaces) {
      const id = idByIfindex.get(i.ifindex);
      if (id !== undefined) endpointIds.set(key, id);
    }
    return endpointIds;
  }

  // Compiles the whole node from a view of the cluster and writes it (the static agent's pass). The
  // compile's parts come back too: what names the flow events of this state (the static monitor).
  async apply(objects: ClusterObjects): Promise<ApplyResult> {
    const o = this.#o;
    const local = await resolveLocalInterfaces(objects.pods, o.node, o.resolver);
    const inputs = inputsFromObjects(objects, o.labelOptions);
    const parts = compileParts(inputs, {
      node: o.node,
      capacity: o.capacity,
      labelOptions: o.labelOptions,
      endpointIds: this.appliedEndpointIds(local.byKey),
      allowLocalhost: o.allowLocalhost,
      hostAddresses: o.hostAddresses?.(),
    });
    const wired = new Map<string, EndpointInterface>();
    for (const pod of localPods(objects.pods, o.node)) {
      const i = local.byKey.get(podKey(pod));
      if (i) wired.set(podKey(pod), { ...i, addresses: podIps(pod) });
    }
    // write() reports the compiled endpoints without an interface: the same pods local.pending names.
    return { ...this.write(parts.result.state, wired), errors: parts.result.errors, inputs, parts };
  }

  // Writes a compiled state: the maps (one batched delta, nothing if they already hold it), then the
  // programs on interfaces not attached yet, then removes links of interfaces that are no endpoints.
  write(state: MapState, interfaces: ReadonlyMap<string, EndpointInterface>): Omit<EnforceResult, "errors"> {
    // Maps first, then programs: a program never runs on an interface without its endpoint entry (nor
    // an endpoint's source check without its addresses: the writer orders those).
    const { desired, pending } = this.#desired.build(
      this.#withAddresses(state, interfaces),
      (ep) => interfaces.get(ep.key)?.ifindex,
    );
    // Off before an endpoint the datapath could not route to is written; on only when none is left.
    const hostRouting = this.#routeHosts(state, interfaces);
    const sync = { ...this.#sync.applyDesired(desired), pending };
    // An endpoint refused a place in the endpoint map gets no program: one would pass its traffic
    // unchecked (no endpoint value); sluice-cni keeps its pod from starting instead.
    const refused = new Set(sync.refused.map((r) => r.key));
    const compiled = new Set(state.endpoints.filter((e) => !refused.has(e.key)).map((e) => e.key));
    const wired = [...interfaces].filter(([key]) => compiled.has(key)).map(([, i]) => i);
    const ta = performance.now();
    const attached = attachAll(
      this.#dp,
      wired.filter((i) => !this.#attached.has(`${i.ifname}#${i.ifindex}`)),
    );
    const attachMs = performance.now() - ta;
    this.#attached.clear();
    for (const i of wired) this.#attached.add(`${i.ifname}#${i.ifindex}`);
    const detached = detachStale(this.#dp, new Set(wired.map((i) => i.ifname)));
    const tm = performance.now();
    const migration = this.#finishMigration();
    const resize = this.#finishResize();
    return {
      sync,
      pending: sync.pending,
      endpoints: wired.length,
      detached: detached.map((l) => `${l.ifname}-${l.hook}`),
      ...migration,
      ...resize,
      swapped: attached.filter((a) => a.adopted).length,
      attachMs,
      migrationMs: performance.now() - tm,
      ...(hostRouting && { hostRouting }),
    };
  }

  // Decides host routing for the interfaces of the compiled endpoints and writes it; returns the
  // decision when it changed.
  #routeHosts(
    state: MapState,
    interfaces: ReadonlyMap<string, EndpointInterface>,
  ): HostRoutingDecision | undefined {
    const gate = this.#o.hostRouting;
    const decision: HostRoutingDecision = gate
      ? gate.decide(state.endpoints.flatMap((e) => interfaces.get(e.key) ?? []))
      : KERNEL_ROUTING;
    const changed = writeHostRouting(this.#dp, decision.on);
    const said = (d: HostRoutingDecision | undefined) => (d?.on ? "on" : d?.reason);
    const last = said(this.#hostRouting);
    this.#hostRouting = decision;
    return changed || last !== said(decision) ? decision : undefined;
  }

  // The state with each wired endpoint's addresses; the same object for an endpoint whose compiled state
  // and addresses are unchanged.
  #withAddresses(state: MapState, interfaces: ReadonlyMap<string, EndpointInterface>): MapState {
    const live = new Set<string>();
    const endpoints = state.endpoints.map((ep) => {
      const i = interfaces.get(ep.key);
      if (!i) return ep; // no interface: pending, nothing is written for it
      live.add(ep.key);
      const addresses = i.addresses.join(",");
      const c = this.#addressed.get(ep.key);
      if (c && c.source === ep && c.addresses === addresses) return c.ep;
      const out: EndpointState = { ...ep, addresses: [...i.addresses] };
      this.#addressed.set(ep.key, { source: ep, addresses, ep: out });
      return out;
    });
    for (const k of this.#addressed.keys()) if (!live.has(k)) this.#addressed.delete(k);
    return { ...state, endpoints };
  }

  // After the first write every link runs this object's programs (or is gone): grown maps take their
  // pins (MapResize.finish waits for the old programs first). Reported once.
  #finishResize(): { resized?: ResizeReport; resizeError?: string } {
    const dp = this.#dp;
    if (this.#resizeReported) return {};
    this.#resizeReported = true;
    if (dp.resizeError) return { resizeError: dp.resizeError };
    if (!dp.resize?.pending) return {};
    try {
      return { resized: dp.resize.finish() };
    } catch (e) {
      return { resizeError: describeResizeError(e) };
    }
  }

  // After the first write every link runs this layout's programs (or is gone): once no old program
  // runs any more, the flows they tracked since the first copy and the counters are carried over and the
  // old maps removed.
  #finishMigration(): { migrated?: MigrationReport; migrationError?: string } {
    const error = this.#migrationError;
    this.#migrationError = undefined;
    const m = this.#migration;
    if (!m) return error ? { migrationError: error } : {};
    this.#migration = undefined;
    try {
      this.#dp.addon.waitForPrograms();
      m.copyConntrack(this.#dp.maps);
      const slotOf = new Map([...this.#sync.applied.endpoints.values()].map((r) => [r.id, r.slot]));
      m.copyCounters(this.#dp.maps, slotOf);
      return { migrated: m.finish() };
    } catch (e) {
      return { migrationError: describeMigrationError(e) };
    } finally {
      m.close();
    }
  }
}
