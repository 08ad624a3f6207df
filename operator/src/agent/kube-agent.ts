// The agent against the API server: informers on everything the compiler reads feed a keyed,
// rate-limited work queue. Each event is mapped (reconcile-keys.ts, pure) to the keys of the local
// endpoints it affects plus node-wide keys; one worker takes every ready key in one pass, records the
// changed objects as the caches hold them now into the incremental compiler, recompiles only the named
// endpoints (and what the compiler finds itself: new, relabelled endpoints; all of them when the peer
// identities changed) and writes the result with one MapSync apply. Level-triggered and idempotent:
// a pass reads the caches, not the events, and a key reconciled twice writes nothing the second time.
// A full rebuild from the caches (ALL_KEY) runs at start, every RESYNC_MS and after a failed pass.
// Nothing is written to the maps before every cache has synced (a restart never writes a partial
// view), and while the API server is unreachable the informers retry and the maps keep the last
// good state. With --cni-socket the chained CNI plugin declares new pods' interfaces and addresses
// before their containers start, and waits until they are enforced (cni-server.ts). SIG Network's
// policy kinds are watched through optional informers (OPTIONAL_WATCHED): while their CRDs are absent
// the caches count as synced and empty, so neither readiness nor the first pass waits for them, and
// CRDs installed (or deleted) later are picked up without a restart like any other policy change.
import type { KubernetesObject } from "@kubernetes/client-node";
import { type ClusterObjects, classifyObjects, emptyObjects } from "../api/objects.ts";
import { DATAPATH_VERSION } from "../datapath/kernel/maps.ts";
import type { Datapath } from "../datapath/kernel/programs.ts";
import { readVerdictCounters } from "../datapath/kernel/verdicts.ts";
import { nodePodView } from "../kube/cache-view.ts";
import { loadKubeConfig, makeClients } from "../kube/client.ts";
import { describeError } from "../kube/errors.ts";
import { Informer, OptionalInformer, type WatchCache, waitForCacheSync } from "../kube/informer.ts";
import { type EnforcedPolicy, type NodeError, NodeStatusPublisher } from "../kube/node-status.ts";
import {
  ADMIN_NETWORK_POLICIES,
  BASELINE_ADMIN_NETWORK_POLICIES,
  CLUSTER_NETWORK_POLICIES,
  CLUSTER_SECURITY_POLICIES,
  NAMESPACES,
  NETWORK_POLICIES,
  NODES,
  PODS,
  type Resource,
  SECURITY_IDENTITIES,
  SECURITY_POLICIES,
} from "../kube/resources.ts";
import { type BatchResult, runBatchWorker, WorkQueue } from "../kube/workqueue.ts";
import type { LabelOptions } from "../identity/labels.ts";
import { liveIdentities } from "../identity/live.ts";
import {
  type AllowLocalhost,
  type Change,
  type CompileError,
  IncrementalCompiler,
  identitiesFor,
  inputsFromObjects,
} from "../policy/index.ts";
import { objectKey } from "../policy/incremental.ts";
import { podKey } from "../api/k8s.ts";
import { policyKey } from "../policy/normalize.ts";
import { podIps } from "../policy/universe.ts";
import type { Pod } from "../api/k8s.ts";
import { HeapRelief } from "../observe/heap-relief.ts";
import type { Logger } from "../observe/log.ts";
import { AgentHealth } from "./agent-health.ts";
import { CniServer } from "./cni-server.ts";
import { localPods, resolvePod } from "./endpoints.ts";
import { type EndpointInterface, type EnforceResult, Enforcer } from "./enforcer.ts";
import type { HostInterface, InterfaceResolver } from "./host-interfaces.ts";
import { type HostRouting, HostRoutingGate } from "./host-routing.ts";
import { listLinks, staleInterfaces } from "./link-check.ts";
import type { AgentMetrics } from "./metrics.ts";
import { nodeAddresses } from "./node-addresses.ts";
import { PassClock, type PassReport, passLogFields, passWroteNothing } from "./pass-report.ts";
import { PolicyDelayTracker } from "./policy-delay.ts";
import { reportWriteOutcome } from "./write-outcome.ts";
import { describeRefused } from "../datapath/writer/capacity-fit.ts";
import { MapCapacityError } from "../datapath/kernel/typed-map.ts";
import { failedClosedCounts, nodeCapacityErrors, nodeErrorsOf } from "./capacity-report.ts";
import { ALL_KEY, endpointKey, endpointOfKey, keysForEvent, type WatchedObject } from "./reconcile-keys.ts";

const WATCHED: readonly Resource[] = [
  NAMESPACES,
  PODS,
  NODES,
  NETWORK_POLICIES,
  SECURITY_POLICIES,
  CLUSTER_SECURITY_POLICIES,
  SECURITY_IDENTITIES,
];
// Kinds whose CRDs a cluster may lack: watched while discovery shows them (kube/informer.ts).
const OPTIONAL_WATCHED: readonly Resource[] = [
  CLUSTER_NETWORK_POLICIES,
  ADMIN_NETWORK_POLICIES,
  BASELINE_ADMIN_NETWORK_POLICIES,
];
// The safety net: a full rebuild from the caches this often, whatever the events said.
const RESYNC_MS = 5 * 60_000;
// How often cached host-side interfaces are checked against the node's links (link-check.ts).
const LINK_CHECK_MS = 10_000;
// Pods whose interface is not wired yet: look again after this long.
const PENDING_RETRY_MS = 1000;
// After a pass of p ms the next starts no sooner than min(p, this) later (workqueue.ts runBatchWorker
// paceMs): under a steady stream of cluster events (identity churn at 50,000 pods: passes of hundreds
// of ms) the agent uses at most about half a core and batches what arrived meanwhile, instead of
// running passes back to back on a whole one; on a node the API server and the pods need the rest.
// Idle, a pass starts at once; lab-sized passes (milliseconds) are paced by milliseconds. Cilium's
// policy update trigger has a minimum interval for the same reason.
const PASS_PACE_MAX_MS = 1000;

export interface KubeAgentOptions {
  kubeconfig?: string;
  /** The kubeconfig context to use (kubectl's --context); default its current context. */
  context?: string;
  node: string;
  datapath: Datapath;
  resolver: InterfaceResolver;
  labelOptions?: LabelOptions;
  // Lines carry component and node already (the CLI's base fields).
  logger: Logger;
  // None: nothing is recorded (--metrics-addr 0).
  metrics?: AgentMetrics;
  // Where the chained CNI plugin reaches the agent (cni-server.ts); none: no plugin.
  cniSocket?: string;
  // CompileOptions.allowLocalhost (default "always").
  allowLocalhost?: AllowLocalhost;
  // Whether the datapath routes between the node's pods itself (host-routing.ts; default "kernel").
  hostRouting?: HostRouting;
  // The node's own addresses (identity host, beside its Node object's); default: this network
  // namespace's (node-addresses.ts). Read again at every full pass.
  hostAddresses?: () => readonly string[];
  // How often the optional informers ask discovery whether their CRDs are served (default 15 s).
  discoveryIntervalMs?: number;
  // Most policy entries one endpoint may have (CompileOptions.capacity); over it the endpoint fails closed.
  endpointPolicyEntries?: number;
}

export type { PassReport } from "./pass-report.ts";

const POLICY_KINDS: ReadonlySet<string> = new Set([
  NETWORK_POLICIES.kind,
  SECURITY_POLICIES.kind,
  CLUSTER_SECURITY_POLICIES.kind,
  ...OPTIONAL_WATCHED.map((r) => r.kind),
]);

// What the node tells the operator: every policy it compiled at its generation, and what failed.
export function enforcementSummary(
  objects: ClusterObjects,
  errors: readonly CompileError[],
): { enforced: EnforcedPolicy[]; errors: NodeError[] } {
  const policies: { key: string; metadata: KubernetesObject["metadata"] }[] = [
    ...objects.networkPolicies.map((p) => ({ kind: "NetworkPolicy" as const, p })),
    ...objects.securityPolicies.map((p) => ({ kind: "SecurityPolicy" as const, p })),
    ...objects.clusterSecurityPolicies.map((p) => ({ kind: "ClusterSecurityPolicy" as const, p })),
    ...(objects.clusterNetworkPolicies ?? []).map((p) => ({ kind: "ClusterNetworkPolicy" as const, p })),
    ...(objects.adminNetworkPolicies ?? []).map((p) => ({ kind: "AdminNetworkPolicy" as const, p })),
    ...(objects.baselineAdminNetworkPolicies ?? []).map((p) => ({
      kind: "BaselineAdminNetworkPolicy" as const,
      p,
    })),
  ].map(({ kind, p }) => ({
    key: policyKey(kind, p.metadata?.namespace, p.metadata?.name ?? ""),
    metadata: p.metadata,
  }));
  const failed = new Set(errors.flatMap((e) => e.policies));
  const uidOf = new Map(policies.map((p) => [p.key, p.metadata?.uid]));
  return {
    enforced: policies
      .filter((p) => p.metadata?.uid && !failed.has(p.key))
      .map((p) => ({ uid: p.metadata!.uid!, generation: p.metadata?.generation ?? 0 })),
    errors: nodeErrorsOf(errors, (p) => uidOf.get(p)),
  };
}

type EnforceWrite = Omit<EnforceResult, "errors">;

interface ResolvedInterface {
  ips: string;
  // The same addresses, for the datapath's source check (Enforcer.write).
  addresses: string[];
  iface?: HostInterface;
}

// What the compile step of a pass produced.
interface Compiled {
  compiler: IncrementalCompiler;
  full: boolean;
  recompiled: number;
  universeRebuilt: boolean;
  peersChanged: boolean;
}

export class KubeAgent {
  readonly #o: KubeAgentOptions;
  readonly #informers: WatchCache<KubernetesObject>[];
  readonly #byKind = new Map<string, WatchCache<KubernetesObject>>();
  readonly #queue = new WorkQueue<string>({ baseDelayMs: 50, maxDelayMs: 30_000 });
  readonly #enforcer: Enforcer;
  readonly #status: NodeStatusPublisher;
  #workers?: Promise<void>;
  #resync?: NodeJS.Timeout;
  #linkCheck?: NodeJS.Timeout;
  #linkCheckFailed = false;
  // Endpoints whose cached interface went stale: resolved again by the next pass.
  readonly #staleInterfaces = new Set<string>();
  // Set at the first full pass; from then on events are mapped to keys against its endpoints.
  #compiler?: IncrementalCompiler;
  #needsFull = false;
  // Objects (objectKey) changed since they were last recorded into the compiler.
  readonly #dirty = new Set<string>();
  #identitiesDirty = false;
  // The compiler's identities are derived from the pods (identitiesFor: no live SecurityIdentity).
  #derivedIdentities = false;
  // The node addresses the compiler last mapped to identity host (joined).
  #hostAddressKey = "";
  // Host-side interfaces by endpoint key, resolved once per set of pod addresses.
  readonly #interfaces = new Map<string, ResolvedInterface>();
  // When the oldest event not yet reconciled was queued (how long keys wait).
  #firstEventAt?: number;
  readonly #cni?: CniServer;
  readonly #log: Logger;
  readonly #policyDelay = new PolicyDelayTracker();
  readonly #heap = new HeapRelief();
  // What /healthz and /readyz report (AgentHealth.live and .ready).
  readonly health = new AgentHealth();
  #passes = 0;

  constructor(o: KubeAgentOptions) {
    this.#o = o;
    this.#log = o.logger;
    const kc = loadKubeConfig(o.kubeconfig, o.context);
    const clients = makeClients(kc);
    this.#enforcer = new Enforcer(o.datapath, {
      node: o.node,
      resolver: o.resolver,
      labelOptions: o.labelOptions,
      hostRouting: new HostRoutingGate(o.hostRouting ?? "kernel"),
    });
    // Read at scrape time only.
    o.metrics?.setSources({
      verdicts: () => readVerdictCounters(o.datapath),
      mapUsage: () => this.#enforcer.mapUsage(),
      policyBudget: () => this.#enforcer.policyBudget(),
    });
    this.#status = new NodeStatusPublisher(clients, o.node, {
      onError: (e) => this.#log.warn({ error: describeError(e) }, "node status not published; retrying"),
    });
    const onError = (r: Resource) => (d: string, n: number) => {
      o.metrics?.watchRestart(r.plural);
      this.#log.warn(
        { resource: r.plural, error: d, failures: n },
        "watch failed; retrying, the maps keep the last good state",
      );
    };
    this.#informers = [
      ...WATCHED.map(
        (r) =>
          new Informer<KubernetesObject>(kc, r, {
            onError: onError(r),
            // Other nodes' pods are peers: only what the universe reads of them (cache-view.ts).
            ...(r === PODS && { view: nodePodView(o.node) }),
          }),
      ),
      ...OPTIONAL_WATCHED.map(
        (r) =>
          new OptionalInformer<KubernetesObject>(kc, r, {
            onError: onError(r),
            discoveryIntervalMs: o.discoveryIntervalMs,
            // Its objects arrive as adds (or leave as deletes) through the usual event path.
            onServedChange: (served) =>
              this.#log.info(
                { resource: r.plural },
                served
                  ? "resource now served: watching it"
                  : "resource no longer served: its policies are dropped",
              ),
          }),
      ),
    ];
    if (o.cniSocket)
      this.#cni = new CniServer(o.cniSocket, {
        node: o.node,
        logger: this.#log,
        pod: (ns, name) => this.#byKind.get("Pod")?.get(name, ns) as Pod | undefined,
        reconcile: (key) => {
          this.#dirty.add(objectKey("Pod", ...(key.split("/") as [string, string])));
          this.#staleInterfaces.add(key);
          this.#enqueue([endpointKey(key)]);
        },
      });
    for (const inf of this.#informers) {
      this.#byKind.set(inf.resource.kind, inf);
      for (const ev of ["add", "update", "delete"] as const)
        inf.on(ev, (obj) => this.#onEvent(inf.resource, ev === "delete", obj));
    }
  }

  // Informer callbacks run synchronously inside client-node: map to keys, mark dirty, queue.
  #onEvent(r: Resource, deleted: boolean, obj: KubernetesObject): void {
    const current = deleted ? undefined : (this.#cniView(obj) as WatchedObject);
    const compiler = this.#compiler;
    if (r.kind === "SecurityIdentity") {
      this.#identitiesDirty = true;
      if (compiler) this.#enqueue(keysForEvent({ current, old: obj as WatchedObject }, this.#view(compiler)));
      return;
    }
    const ns = obj.metadata?.namespace;
    const name = obj.metadata?.name ?? "";
    const id = objectKey(r.kind, ns, name);
    // Before the first full pass: it reads every cache after they synced.
    if (!compiler) {
      this.#dirty.add(id);
      return;
    }
    const old = compiler.object(r.kind, ns, name) as WatchedObject | undefined;
    const keys = keysForEvent({ old, current }, this.#view(compiler));
    if (keys.length === 0) return;
    if (POLICY_KINDS.has(r.kind)) this.#policyDelivered(id, r.kind, obj, deleted, old);
    this.#dirty.add(id);
    this.#enqueue(keys);
  }

  // A new generation (or the deletion) of a policy reached the watch: its implementation delay runs
  // until a pass writes it (status updates keep the generation and are no policy change).
  #policyDelivered(
    id: string,
    kind: string,
    obj: KubernetesObject,
    deleted: boolean,
    old: WatchedObject | undefined,
  ): void {
    if (!this.#o.metrics) return;
    const generation = deleted ? undefined : (obj.metadata?.generation ?? 0);
    if (!deleted && old && (old.metadata?.generation ?? 0) === generation) return;
    const ref = { kind, namespace: obj.metadata?.namespace, name: obj.metadata?.name ?? "" };
    this.#policyDelay.delivered(id, ref, generation, performance.now());
  }

  #view(c: IncrementalCompiler) {
    return { node: this.#o.node, endpoints: c.localEndpoints };
  }

  #enqueue(keys: readonly string[]): void {
    this.#firstEventAt ??= performance.now();
    // Before the worker runs, keys wait for the first pass, which is not a wedged reconciler.
    if (this.#workers) this.health.keysQueued();
    for (const k of keys) this.#queue.add(k);
  }

  // Starts watching; resolves once the caches have synced and the first (full) pass ran.
  async start(): Promise<void> {
    // Listening before the caches sync: a request waits for them rather than failing.
    if (this.#cni) await this.#cni.start(await listLinks());
    for (const inf of this.#informers) inf.start();
    const t0 = performance.now();
    await waitForCacheSync(this.#informers);
    this.health.cachesSynced();
    this.#log.info(
      { duration_ms: Math.round(performance.now() - t0), heap_relief: this.#heap.enabled },
      "caches synced",
    );
    this.#o.metrics?.setSources({ queueDepth: () => this.#queue.length });
    await this.reconcile([ALL_KEY]);
    this.#workers = runBatchWorker(
      this.#queue,
      (keys) => this.reconcile(keys),
      (keys, e) => this.#passFailed(keys, e),
      undefined,
      (passMs) => Math.min(passMs, PASS_PACE_MAX_MS),
    );
    this.#resync = setInterval(() => this.#queue.add(ALL_KEY), RESYNC_MS);
    this.#resync.unref();
    this.#linkCheck = setInterval(() => void this.#checkLinks(), LINK_CHECK_MS);
    this.#linkCheck.unref();
  }

  // The compiler as of the last successful pass and the number of passes: what `sluice monitor` names
  // flow events with (monitor/view.ts); undefined before the first pass.
  get compiled(): { compiler: IncrementalCompiler; passes: number } | undefined {
    return this.#compiler && { compiler: this.#compiler, passes: this.#passes };
  }

  // The node's per-rule counters (enforcer.ts ruleCounters): what GET /v1/rules names and sums.
  ruleCounters(): ReturnType<Enforcer["ruleCounters"]> {
    return this.#enforcer.ruleCounters();
  }

  snapshot(): ClusterObjects {
    const objects: unknown[] = [];
    for (const inf of this.#informers) for (const o of inf.list()) objects.push(this.#cniView(o));
    const o = classifyObjects(objects);
    o.securityIdentities = liveIdentities(o.securityIdentities);
    return o;
  }

  // One pass over a batch of keys: compile what they name (everything on a full pass), find the
  // interfaces of endpoints that need one, write the maps and attach, then tell the operator and the
  // CNI plugin. Timing, metrics and the log line are #passDone's.
  async reconcile(keys: readonly string[]): Promise<BatchResult<string>> {
    this.health.passStarted();
    const pass = new PassClock(this.#takeQueuedMs());
    // Endpoints resolved in this pass: one not wired yet is not looked up a second time.
    const resolved = new Set<string>();
    const step = await this.#compile(keys, pass, resolved);
    await pass.timeAsync("resolve", () => this.#resolveChanged(step.compiler, resolved));
    const result = pass.time("sync", () =>
      this.#enforcer.write(step.compiler.state, this.#wiredInterfaces()),
    );
    this.#publish(step.compiler, result);
    this.#settleCni(step.compiler, result);
    this.#passDone(keys, step, pass, result);
    // The compiled endpoints without an interface: every one was resolved above, and is looked up
    // again after a pause.
    return { requeueAfterMs: new Map(result.pending.map((k) => [endpointKey(k), PENDING_RETRY_MS])) };
  }

  // How long the oldest event of this pass waited for it.
  #takeQueuedMs(): number {
    const at = this.#firstEventAt;
    this.#firstEventAt = undefined;
    return at === undefined ? 0 : performance.now() - at;
  }

  async #compile(keys: readonly string[], pass: PassClock, resolved: Set<string>): Promise<Compiled> {
    // The node's addresses are the sources of its own traffic to pods (identity host): a CNI adds one
    // with the first pod of a bridge or of each ptp veth (its gateway), so a change recompiles all.
    const hostAddresses = (this.#o.hostAddresses ?? nodeAddresses)();
    const hostKey = hostAddresses.join(",");
    const full =
      this.#needsFull || !this.#compiler || keys.includes(ALL_KEY) || hostKey !== this.#hostAddressKey;
    this.#hostAddressKey = hostKey;
    if (!full) return pass.time("compile", () => this.#recompile(keys));
    this.#interfaces.clear();
    // Interfaces first: the endpoint ids the maps hold are found by ifindex.
    const pods = localPods(this.#list("Pod") as ClusterObjects["pods"], this.#o.node);
    await pass.timeAsync("resolve", () => this.#resolve(pods, resolved));
    return pass.time("compile", () => this.#rebuild(hostAddresses));
  }

  // A new compiler from a snapshot of the caches, without an await: no event falls in between.
  #rebuild(hostAddresses: readonly string[]): Compiled {
    const objects = this.snapshot();
    this.#dirty.clear();
    this.#identitiesDirty = false;
    this.#derivedIdentities = objects.securityIdentities.length === 0;
    const compiler = new IncrementalCompiler(inputsFromObjects(objects, this.#o.labelOptions), {
      node: this.#o.node,
      labelOptions: this.#o.labelOptions,
      endpointIds: this.#enforcer.appliedEndpointIds(this.#wiredInterfaces()),
      previous: this.#compiler?.state,
      allowLocalhost: this.#o.allowLocalhost,
      hostAddresses,
      capacity: this.#o.endpointPolicyEntries,
    });
    this.#compiler = compiler;
    this.#needsFull = false;
    return {
      compiler,
      full: true,
      recompiled: compiler.localEndpoints.length,
      universeRebuilt: true,
      peersChanged: true,
    };
  }

  // Records the dirty objects as the caches hold them now and recompiles the named endpoints.
  #recompile(keys: readonly string[]): Compiled {
    const compiler = this.#compiler!;
    const changes = this.#drainDirty();
    for (const c of changes) compiler.record(c);
    this.#refreshIdentities(compiler, changes);
    const eps = keys.map(endpointOfKey).filter((k) => k !== undefined);
    const rc = compiler.recompile(eps);
    return { ...rc, compiler, full: false, recompiled: rc.recompiled.length };
  }

  // Identities derived from the pods (no live SecurityIdentity yet) change with pods and namespace
  // labels, so they are derived again on a pass that recorded one; setIdentities ignores an
  // unchanged set.
  #refreshIdentities(compiler: IncrementalCompiler, changes: readonly Change[]): void {
    const podsChanged = changes.some((c) => c.object.kind === "Pod" || c.object.kind === "Namespace");
    if (!this.#identitiesDirty && !(this.#derivedIdentities && podsChanged)) return;
    this.#identitiesDirty = false;
    const live = liveIdentities(this.#list("SecurityIdentity") as ClusterObjects["securityIdentities"]);
    this.#derivedIdentities = live.length === 0;
    compiler.setIdentities(
      identitiesFor(
        {
          ...emptyObjects(),
          securityIdentities: live,
          pods: this.#list("Pod") as ClusterObjects["pods"],
          namespaces: this.#list("Namespace") as ClusterObjects["namespaces"],
        },
        this.#o.labelOptions,
      ),
    );
  }

  // Interfaces of endpoints that are new, moved to other addresses, re-wired or not wired yet.
  async #resolveChanged(compiler: IncrementalCompiler, resolved: Set<string>): Promise<void> {
    for (const k of this.#staleInterfaces) this.#interfaces.delete(k);
    this.#staleInterfaces.clear();
    const live = new Set(compiler.localEndpoints.map((e) => e.key));
    for (const k of this.#interfaces.keys()) if (!live.has(k)) this.#interfaces.delete(k);
    const changed = compiler.localEndpoints.filter((e) => {
      const c = this.#interfaces.get(e.key);
      if (c?.ips !== podIps(e.pod).join(",")) return true;
      return !c.iface && !resolved.has(e.key);
    });
    await this.#resolve(
      changed.map((e) => e.pod),
      resolved,
    );
  }

  // Answers the CNI requests whose endpoint this pass enforced, and fails those it had no place for.
  #settleCni(compiler: IncrementalCompiler, result: EnforceWrite): void {
    if (!this.#cni) return;
    const refused = new Map(result.sync.refused.map((r) => [r.key, describeRefused(r)]));
    this.#cni.settle((key) => {
      const ep = compiler.state.endpoints.find((e) => e.key === key);
      return (
        ep && {
          identity: ep.identity,
          iface: this.#interfaces.get(key)?.iface,
          ...(refused.has(key) && { refused: refused.get(key) }),
        }
      );
    });
  }

  // The pass's bookkeeping: health, metrics, the policy implementation delays and one log line.
  #passDone(keys: readonly string[], step: Compiled, pass: PassClock, result: EnforceWrite): void {
    const report: PassReport = {
      keys: keys.length,
      full: step.full,
      recompiled: step.recompiled,
      universeRebuilt: step.universeRebuilt,
      peersChanged: step.peersChanged,
      endpoints: result.endpoints,
      sync: result.sync,
      queuedMs: pass.queuedMs,
      compileMs: pass.ms("compile"),
      resolveMs: pass.ms("resolve"),
      syncMs: pass.ms("sync"),
      totalMs: pass.elapsedMs(),
    };
    this.health.passSucceeded();
    this.#passes++;
    const metrics = this.#o.metrics;
    if (metrics) {
      metrics.pass(report);
      const compiler = step.compiler;
      metrics.policiesImplemented(
        this.#policyDelay.written(
          (p) => compiler.object(p.kind, p.namespace, p.name)?.metadata?.generation ?? undefined,
          performance.now(),
        ),
      );
    }
    this.#heap.afterPass(step.universeRebuilt);
    const quiet = passWroteNothing(result.sync) && !step.full;
    this.#log[quiet ? "debug" : "info"](passLogFields(report), "reconciled");
    reportWriteOutcome(result, this.#log, metrics, step.compiler.errors);
  }

  #passFailed(keys: readonly string[], e: unknown): void {
    // The compiler may be half way through a change: rebuild it from the caches on the retry.
    this.#needsFull = true;
    this.health.passFailed(describeError(e));
    this.#o.metrics?.passFailed(keys.length);
    // A node-wide map that cannot hold the state (capacity-fit.ts fails endpoints closed or refuses
    // them for the policy and endpoint maps; the ipcache and source maps refuse the write whole).
    if (e instanceof MapCapacityError)
      this.#status.writeFailed({
        reason: "CapacityExceeded",
        needed: e.required,
        capacity: e.maxEntries,
        message: `the node's ${e.map} map is full: the desired state needs ${e.required} entries, it holds ${e.maxEntries}; nothing was written, the maps keep the last good state`,
      });
    this.#log.error(
      { keys: keys.length, err: e },
      "reconcile failed; retrying with backoff, the maps keep the last good state",
    );
  }

  async #checkLinks(): Promise<void> {
    const cached = [...this.#interfaces].map(([k, v]): [string, HostInterface | undefined] => [k, v.iface]);
    if (cached.every(([, i]) => !i) && !this.#cni?.size) return;
    let links: Map<string, number>;
    const listedAt = Date.now();
    try {
      links = await listLinks();
    } catch (e) {
      if (!this.#linkCheckFailed)
        this.#log.warn(
          { error: describeError(e) },
          "link check failed; interfaces are resolved again at each full resync only",
        );
      this.#linkCheckFailed = true;
      return;
    }
    // Declared interfaces that are gone: forgotten, so their pods are resolved by route again.
    const gone = this.#cni?.dropGone(links, listedAt) ?? [];
    const stale = [...new Set([...staleInterfaces(cached, links), ...gone])];
    if (stale.length === 0) return;
    this.#log.info({ endpoints: stale }, "link check: interfaces changed; resolving them again");
    for (const k of stale) this.#staleInterfaces.add(k);
    this.#enqueue(stale.map(endpointKey));
  }

  #list(kind: string): readonly KubernetesObject[] {
    const inf = this.#byKind.get(kind);
    return inf ? inf.list().map((o) => this.#cniView(o)) : [];
  }

  // An object as the compiler reads it (the caches' objects carry their kind, kube/cache-view.ts): a
  // pod with the addresses its CNI ADD declared while its status has none.
  #cniView(o: KubernetesObject): KubernetesObject {
    return this.#cni && o.kind === "Pod" ? (this.#cni.podView(o as Pod) as KubernetesObject) : o;
  }

  // The dirty objects as the caches hold them now (level-triggered: whatever the events said).
  #drainDirty(): Change[] {
    const out: Change[] = [];
    for (const id of this.#dirty) {
      const [kind, ...rest] = id.split("/");
      const inf = this.#byKind.get(kind);
      if (!inf) continue;
      const [ns, name] = rest.length === 2 ? rest : [undefined, rest[0]];
      const cached = inf.get(name, ns);
      const o = cached && this.#cniView(cached);
      const object = (o ?? { kind, metadata: { name, namespace: ns } }) as Change["object"];
      out.push({ type: o ? "upsert" : "delete", object });
    }
    this.#dirty.clear();
    return out;
  }

  async #resolve(pods: readonly ClusterObjects["pods"][number][], resolved: Set<string>): Promise<void> {
    for (const pod of pods) {
      const key = podKey(pod);
      const iface = this.#cni?.interfaceOf(pod) ?? (await resolvePod(this.#o.resolver, pod));
      const addresses = podIps(pod);
      this.#interfaces.set(key, { ips: addresses.join(","), addresses, iface });
      resolved.add(key);
    }
  }

  // The cached interfaces that were found, by endpoint key.
  #wiredInterfaces(): Map<string, EndpointInterface> {
    const byKey = new Map<string, EndpointInterface>();
    for (const [k, v] of this.#interfaces) if (v.iface) byKey.set(k, { ...v.iface, addresses: v.addresses });
    return byKey;
  }

  #publish(compiler: IncrementalCompiler, result: EnforceWrite): void {
    const inputs = compiler.inputs();
    const objects: ClusterObjects = {
      ...emptyObjects(),
      networkPolicies: [...(inputs.networkPolicies ?? [])],
      securityPolicies: [...(inputs.securityPolicies ?? [])],
      clusterSecurityPolicies: [...(inputs.clusterSecurityPolicies ?? [])],
      clusterNetworkPolicies: [...(inputs.clusterNetworkPolicies ?? [])],
      adminNetworkPolicies: [...(inputs.adminNetworkPolicies ?? [])],
      baselineAdminNetworkPolicies: [...(inputs.baselineAdminNetworkPolicies ?? [])],
    };
    const failed = result.sync.failedClosed;
    const errors = [
      ...compiler.errors,
      ...nodeCapacityErrors(failed, (ep) => compiler.policiesSelecting(ep), result.sync.refused),
    ];
    const summary = enforcementSummary(objects, errors);
    const counts = failedClosedCounts(compiler.errors, failed, result.sync.refused);
    this.#status.update({
      datapathVersion: DATAPATH_VERSION,
      endpoints: result.endpoints,
      enforced: summary.enforced,
      errors: summary.errors,
      failedClosedEndpoints: counts.endpointLimit + counts.policyMap + counts.endpointMap,
      // A high-water mark for the allocator: numbers at or below it are never handed out again.
      maxIdentity: inputs.identities.reduce((m, i) => Math.max(m, i.id), 0),
    });
  }

  async stop(): Promise<void> {
    await this.#cni?.close();
    if (this.#resync) clearInterval(this.#resync);
    if (this.#linkCheck) clearInterval(this.#linkCheck);
    this.#queue.shutDown();
    await Promise.all(this.#informers.map((i) => i.stop()));
    await this.#workers;
    await this.#status.flush(false).catch(() => {});
    this.#status.stop();
  }
}
