// The scale rig (issue 14 §1): a real kube-apiserver + etcd populated to a ScaleShape, the real
// `sluice operator` process, one real `sluice agent` enforcing a one-node network-namespace lab with
// real BPF maps, and the other nodes simulated (sim-agents.ts); then a policy change, a burst of new
// label sets and their GC, and steady churn, measured from the processes' own metrics and logs and
// the API server's audit log (requesters.ts). runRig returns the numbers; run.ts prints them.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DEFAULT_WORKERS } from "../../operator/src/controllers/identity-controller.ts";
import { labelSetHash } from "../../operator/src/identity/allocator.ts";
import { securityLabels } from "../../operator/src/identity/labels.ts";
import { loadKubeConfig } from "../../operator/src/kube/client.ts";
import { applyCrds, createLabCluster } from "../../operator/src/lab/cluster-setup.ts";
import { registerCleanup } from "../../operator/src/lab/cleanup.ts";
import { mapLimit } from "../../operator/src/lab/exec.ts";
import type { Lab } from "../../operator/src/lab/lab.ts";
import { newRunId } from "../../operator/src/lab/netns-plan.ts";
import { REPO_ROOT } from "../../operator/src/lab/local-apiserver.ts";
import { parseSamples, type Sample } from "../support/prometheus.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";
import { identityWriteCeiling, type WriteCeiling } from "./ceiling.ts";
import { ApiHttp } from "./http.ts";
import { identityCensus } from "./identities.ts";
import { OperatorProcess, sampleValue } from "./operator-process.ts";
import { createPod, podPlaces, populate, type PopulateTimings, simNodes } from "./populate.ts";
import {
  AuditCounter,
  type Requester,
  REQUESTERS,
  requesterKubeconfig,
  requesterSetup,
} from "./requesters.ts";
import { namespaceName, podIp, podLabels, type ScaleShape, simNodeName } from "./shape.ts";
import { SimulatedAgents } from "./sim-agents.ts";

export interface RigOptions {
  shape: ScaleShape;
  /** New label sets created at once, then deleted (allocation and GC throughput). */
  burst: number;
  churnSeconds: number;
  churnPerSecond: number;
  steadySeconds: number;
  gcGraceSeconds: number;
  /** The `sluice` entry point both daemons run (default the sources, as the tests run them). */
  main?: string;
  /** Environment both daemons get besides this process's (image/env: the image's allocator). */
  env?: Record<string, string>;
  log: (line: string) => void;
}

export interface Rates {
  /** requests per second by requester */
  perSecond: Record<Requester, number>;
  /** "requester: verb resource n, ..." top entries */
  top: string[];
}

export interface RigResult {
  shape: ScaleShape;
  populate: PopulateTimings;
  /** The API server's own rate for identity creates and deletes, before the operator starts. */
  ceiling: WriteCeiling;
  operator: {
    syncMs: number;
    initialAllocationMs: number;
    initialLabelSets: number;
    rssAfterAllocation: number;
    rss: number;
    heapUsed: number;
    /** V8's heap as committed (every space), and memory outside it that V8 accounts (Buffers). */
    heapTotal: number;
    external: number;
    /** V8's young generation as reserved (heap space "new"): sized from the machine's memory. */
    newSpace: number;
    /** CPU seconds (user + system) from its start to the end of the run. */
    cpuSeconds: number;
  };
  agent: {
    readyMs: number;
    cachesSyncedMs: number;
    firstPassMs: number;
    /** map → "entries/capacity" */
    maps: Record<string, string>;
    /** Sampled at the end of the steady phase. */
    rss: number;
    /** Sampled at the end of the run (after the policy change, the burst and the churn). */
    rssEnd: number;
    heapUsed: number;
    newSpace: number;
    /** CPU seconds from the steady sample to the end (the policy change, the burst, the churn). */
    cpuSecondsAfterSteady: number;
    /** Reconcile passes over the same span, and their compile phase's mean (the compiler's cost per pass). */
    passesAfterSteady: number;
    compileMsPerPass: number;
  };
  policyChange: {
    ms: number;
    nodes: number;
    statusWrites: number;
    statusReconciles: number;
    statusReconcileSeconds: number;
    nodeStatusWrites: number;
  };
  /** deleteMs: the one deletecollection of the burst's pods (their sets come due over that long). */
  burst: {
    labelSets: number;
    createMs: number;
    allocMs: number;
    deleteMs: number;
    gcMs: number;
    gcDeleted: number;
  };
  churn: { ops: number; seconds: number; allocated: number };
  identities: { live: number; duplicates: number; missing: number; usedLabelSets: number };
  api: { steady: Rates; churn: Rates; policyChange: Rates };
}

const LAB_NODE = "scale-node";
const LAB_NS = "scale-lab";
const PROBE_POLICY = "scale-probe";
const BURST_NS = "scale-burst";
const CSP_PATH = "/apis/sluice.dev/v1alpha1/clustersecuritypolicies";

function labObjects(): unknown[] {
  const pod = (name: string, k: number, ip: string) => ({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: LAB_NS, labels: podLabels(k) },
    spec: { nodeName: LAB_NODE, containers: [{ name: "c", ports: [{ name: "http", containerPort: 8080 }] }] },
    status: { podIP: ip, podIPs: [{ ip }] },
  });
  return [
    {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: LAB_NS, labels: { team: "t0", "scale.sluice.dev/rig": "true" } },
    },
    pod("lab-0", 0, "10.244.1.10"),
    pod("lab-1", 1, "10.244.1.11"),
  ];
}

// Every rig pod (the lab's too): a Baseline policy whose status needs every node's report.
function probePolicy(port: number) {
  return {
    apiVersion: "sluice.dev/v1alpha1",
    kind: "ClusterSecurityPolicy",
    metadata: { name: PROBE_POLICY },
    spec: {
      tier: "Baseline",
      priority: 1,
      endpointSelector: {},
      namespaceSelector: { matchLabels: { "scale.sluice.dev/rig": "true" } },
      ingress: [
        {
          action: "Allow",
          endpoints: [{ namespaceSelector: { matchLabels: { "scale.sluice.dev/rig": "true" } } }],
          ports: [{ port, protocol: "TCP" }],
        },
      ],
    },
  };
}

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs: number,
  everyMs = 100,
) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (performance.now() > deadline)
      throw new Error(`scale rig: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

function rates(counter: AuditCounter, seconds: number): Rates {
  const c = counter.read();
  const perSecond = Object.fromEntries(REQUESTERS.map((u) => [u, c.total(u) / seconds])) as Record<
    Requester,
    number
  >;
  const top: string[] = [];
  for (const u of REQUESTERS) {
    const entries = [...(c.byUser.get(u) ?? new Map<string, number>())].sort((a, b) => b[1] - a[1]);
    if (entries.length)
      top.push(
        `${u}: ${entries
          .slice(0, 4)
          .map(([k, n]) => `${k} ${(n / seconds).toFixed(2)}/s`)
          .join(", ")}`,
      );
  }
  return { perSecond, top };
}

// The agent's log lines (JSON), from the lab's log directory.
function agentLines(dir: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of readFileSync(join(dir, `agent-${LAB_NODE}.log`), "utf8").split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // A partial last line.
    }
  }
  return out;
}

export async function runRig(o: RigOptions): Promise<RigResult> {
  const s = o.shape;
  const log = o.log;
  const runId = newRunId();
  const dir = mkdtempSync(join(tmpdir(), `sluice-scale-${runId}-`));
  const undo: Array<() => Promise<void> | void> = [() => rmSync(dir, { recursive: true, force: true })];
  const runUndo = async () => {
    for (const f of undo.splice(0).reverse())
      await Promise.resolve(f()).catch((err) => log(`cleanup: ${String(err)}`));
  };
  // Ctrl-C or SIGTERM: the operator, the API server and the work directory go too (as the lab does).
  const unregister = registerCleanup(runUndo);
  try {
    const req = requesterSetup(dir, runId);
    const api: ApiServer = await startApiServer({ extraArgs: req.apiserverArgs, timeoutMs: 180_000 });
    undo.push(() => api.stop());
    if (api.external) throw new Error("the scale rig needs its own API server (audit log, tokens)");
    const kubeconfigFor = (u: Requester) =>
      requesterKubeconfig(api.kubeconfigPath, req.tokens[u], join(dir, `${u}.kubeconfig`));
    const crdDir = join(REPO_ROOT, "crds");
    const crds = [
      ...readdirSync(crdDir).filter((f) => f.endsWith(".yaml")),
      ...readdirSync(join(crdDir, "upstream")).map((f) => `upstream/${f}`),
    ];
    const lab: Lab = await createLabCluster(
      api,
      labObjects(),
      { agentLogDir: dir, log, agentEnv: o.env, ...(o.main ? { agentMain: o.main } : {}) },
      {},
    );
    undo.push(() => lab.destroy());
    // createLabCluster applies Sluice's CRDs; SIG Network's are the cluster owner's, applied here.
    await applyCrds(api.kubeconfigPath, crds);

    const admin = await ApiHttp.fromKubeConfig(loadKubeConfig(api.kubeconfigPath), 48);
    undo.push(() => admin.close());
    const pop = await populate(admin, s, true, log);
    await admin.must("POST", CSP_PATH, probePolicy(9000));
    const audit = new AuditCounter(req.auditLog);

    // What the API server itself gives the operator's identity writes here (the allocation and GC rows'
    // baseline), before the operator exists.
    const ceiling = await identityWriteCeiling(admin, Math.min(1000, s.labelSets), DEFAULT_WORKERS);
    log(
      `API server: ${Math.round(ceiling.createsPerS)} identity creates/s, ${Math.round(ceiling.deletesPerS)} deletes/s (${ceiling.n}, ${DEFAULT_WORKERS} in flight)`,
    );

    // The operator meets a populated cluster: every label set waits for its identity.
    const op = new OperatorProcess(
      kubeconfigFor("sluice-operator"),
      `${o.gcGraceSeconds}s`,
      runId,
      o.main,
      o.env,
    );
    undo.push(() => op.stop());
    const tOp = performance.now();
    await until("the operator's /readyz", async () => (await op.get("/readyz")).status === 200, 600_000);
    const syncMs = performance.now() - tOp;
    const initialLabelSets = s.labelSets + 2;
    await until(
      `${initialLabelSets} identities`,
      // The allocation counter, not the live-identities gauge: that one hashes every identity per scrape.
      async () =>
        sampleValue(await op.metrics(), "sluice_operator_identities_allocated_total") >= initialLabelSets,
      900_000,
      // Each scrape costs the operator a pass over every identity (the live-identities gauge).
      500,
    );
    const initialAllocationMs = performance.now() - tOp - syncMs;
    const rssAfterAllocation = op.rssBytes();
    log(
      `operator: caches synced in ${Math.round(syncMs)} ms, ${initialLabelSets} identities ${Math.round(initialAllocationMs)} ms later`,
    );

    // The other nodes report, then the real agent starts against the full cluster.
    const perNode = new Map<string, number>();
    for (const p of podPlaces(s)) perNode.set(p.node, (perNode.get(p.node) ?? 0) + 1);
    const simKc = loadKubeConfig(kubeconfigFor("sluice-sim-agents"));
    const simHttp = await ApiHttp.fromKubeConfig(simKc, 16);
    undo.push(() => simHttp.close());
    const sim = new SimulatedAgents(simKc, simHttp, simNodes(s), { endpoints: (n) => perNode.get(n) ?? 0 });
    undo.push(() => sim.stop());
    await sim.start();
    await until("the simulated nodes' first reports", async () => sim.pending() === 0, 600_000);
    log(`simulated agents: ${sim.writes} node status writes`);

    const tAgent = performance.now();
    // The lab adds --metrics-addr only for the sources' entry point (older builds have no server).
    await lab.startKubeAgent(LAB_NODE, kubeconfigFor("sluice-agent"), 900_000, [
      ...(o.main ? ["--metrics-addr", "127.0.0.1:0"] : []),
    ]);
    const readyMs = performance.now() - tAgent;
    const lines = agentLines(dir);
    const cachesSyncedMs = Number(lines.find((l) => l.msg === "caches synced")?.duration_ms ?? Number.NaN);
    const firstPassMs = Number(lines.find((l) => l.msg === "reconciled")?.total_ms ?? Number.NaN);
    log(
      `agent: ready in ${Math.round(readyMs)} ms (caches ${cachesSyncedMs} ms, first pass ${firstPassMs} ms)`,
    );
    const agentMetrics = async (): Promise<Sample[]> =>
      parseSamples((await lab.agentHttp(LAB_NODE, "/metrics")).body);

    // Steady state: nothing changes but heartbeats and resyncs.
    const queueIdle = async () => {
      const m = await op.metrics();
      return sampleValue(m, "sluice_operator_workqueue_depth") === 0 && sim.pending() === 0;
    };
    await until("the operator's queues to drain", queueIdle, 300_000, 500);
    await sleep(2000);
    audit.mark();
    await sleep(o.steadySeconds * 1000);
    await sleep(1500); // the audit log's batch
    const steady = rates(audit, o.steadySeconds);
    const am = await agentMetrics();
    const agent = {
      readyMs,
      cachesSyncedMs,
      firstPassMs,
      maps: Object.fromEntries(
        am
          .filter((x) => x.name === "sluice_datapath_map_entries")
          .map((x) => [
            x.labels.map ?? "",
            `${x.value}/${sampleValue(am, "sluice_datapath_map_capacity_entries", { map: x.labels.map ?? "" })}`,
          ]),
      ),
      rss: sampleValue(am, "process_resident_memory_bytes"),
      heapUsed: sampleValue(am, "nodejs_heap_size_used_bytes"),
      newSpace: sampleValue(am, "nodejs_heap_space_size_total_bytes", { space: "new" }),
    };
    const agentCpuAtSteady = sampleValue(am, "process_cpu_seconds_total");
    const passesAtSteady = sampleValue(am, "sluice_agent_reconcile_duration_seconds_count");
    const compileAtSteady = sampleValue(am, "sluice_agent_reconcile_phase_duration_seconds_sum", {
      phase: "compile",
    });
    log(
      `agent at scale: rss ${(agent.rss / 2 ** 20).toFixed(0)} MiB, heap ${(agent.heapUsed / 2 ** 20).toFixed(0)} MiB, maps ${JSON.stringify(agent.maps)}`,
    );

    // One policy change until Enforced=True on every node.
    const nodesWithPods = s.nodes;
    const m0 = await op.metrics();
    audit.mark();
    const tChange = performance.now();
    const changed = await admin.must<{ metadata: { generation: number } }>(
      "PATCH",
      `${CSP_PATH}/${PROBE_POLICY}`,
      { spec: { ingress: probePolicy(9001).spec.ingress } },
      "application/merge-patch+json",
    );
    const gen = changed.body.metadata.generation;
    await until(
      "Enforced=True on the probe policy",
      async () => {
        const p = await admin.must<{
          status?: {
            observedGeneration?: number;
            enforcingNodes?: number;
            totalNodes?: number;
            conditions?: Array<{ type: string; status: string }>;
          };
        }>("GET", `${CSP_PATH}/${PROBE_POLICY}`);
        const st = p.body.status;
        return (
          st?.observedGeneration === gen &&
          st.conditions?.some((c) => c.type === "Enforced" && c.status === "True") &&
          st.enforcingNodes === nodesWithPods
        );
      },
      300_000,
      50,
    );
    const changeMs = performance.now() - tChange;
    await until("the operator's queues to drain", queueIdle, 300_000, 500);
    const changeSeconds = (performance.now() - tChange) / 1000;
    await sleep(1500);
    const changeRates = rates(audit, changeSeconds);
    const m1 = await op.metrics();
    const statusLabels = { controller: "status" };
    const policyChange = {
      ms: changeMs,
      nodes: nodesWithPods,
      statusWrites:
        sampleValue(m1, "sluice_operator_policy_status_writes_total", { result: "ok" }) -
        sampleValue(m0, "sluice_operator_policy_status_writes_total", { result: "ok" }),
      statusReconciles:
        sampleValue(m1, "sluice_operator_reconcile_duration_seconds_count", statusLabels) -
        sampleValue(m0, "sluice_operator_reconcile_duration_seconds_count", statusLabels),
      statusReconcileSeconds:
        sampleValue(m1, "sluice_operator_reconcile_duration_seconds_sum", statusLabels) -
        sampleValue(m0, "sluice_operator_reconcile_duration_seconds_sum", statusLabels),
      nodeStatusWrites: 0,
    };
    const changeCounts = changeRates.perSecond["sluice-sim-agents"] * changeSeconds;
    policyChange.nodeStatusWrites = Math.round(changeCounts);
    log(
      `policy change: Enforced=True on ${nodesWithPods} nodes in ${Math.round(changeMs)} ms, ${policyChange.statusWrites} status writes`,
    );

    // A burst of new label sets: allocation, then (pods deleted) GC after the grace period.
    const simCount = s.nodes - 1;
    // In a namespace of their own, so that one deletecollection makes every set unused at once and
    // the GC figure is the sweep's, not the rig's deletion rate.
    await admin.must("POST", "/api/v1/namespaces", { metadata: { name: BURST_NS } });
    const burstPods = Array.from({ length: o.burst }, (_, j) => ({
      index: s.pods + j,
      namespace: BURST_NS,
      name: `burst-${j}`,
      labels: { app: `burst-${j}` },
      node: simNodeName(1 + (j % simCount)),
      ip: podIp(s.pods + j),
    }));
    const allocated0 = sampleValue(await op.metrics(), "sluice_operator_identities_allocated_total");
    const tBurst = performance.now();
    await mapLimit(burstPods, 48, (p) => createPod(admin, p));
    const createMs = performance.now() - tBurst;
    await until(
      `${o.burst} burst identities`,
      async () =>
        sampleValue(await op.metrics(), "sluice_operator_identities_allocated_total") - allocated0 >= o.burst,
      600_000,
      250,
    );
    const allocMs = performance.now() - tBurst;
    const gc0 = sampleValue(await op.metrics(), "sluice_operator_identities_gc_total");
    const tDelete = performance.now();
    await admin.must("DELETE", `/api/v1/namespaces/${BURST_NS}/pods?gracePeriodSeconds=0`);
    const deleteMs = performance.now() - tDelete;
    // From the last scrape that saw no deletion yet to the one that saw them all: an upper bound of
    // the time the GC took (a scrape of a busy operator can take longer than the GC itself).
    let beforeFirst = performance.now();
    let gcDeleted = 0;
    await until(
      `${o.burst} identities collected`,
      async () => {
        const asked = performance.now();
        gcDeleted = sampleValue(await op.metrics(), "sluice_operator_identities_gc_total") - gc0;
        if (gcDeleted === 0) beforeFirst = asked;
        return gcDeleted >= o.burst;
      },
      o.gcGraceSeconds * 1000 + 600_000,
      100,
    );
    const gcMs = performance.now() - beforeFirst;
    log(
      `burst: ${o.burst} label sets allocated in ${Math.round(allocMs)} ms (created in ${Math.round(createMs)} ms), collected in ${Math.round(gcMs)} ms`,
    );

    // Steady churn: create (a new label set), relabel (to a new one), delete (a churned pod).
    const allocatedBeforeChurn = sampleValue(
      await op.metrics(),
      "sluice_operator_identities_allocated_total",
    );
    const base = podPlaces(s);
    const churned: Array<{ namespace: string; name: string }> = [];
    let ops = 0;
    let inFlight = 0;
    let churnError: unknown;
    audit.mark();
    const tChurn = performance.now();
    const tick = 1000 / o.churnPerSecond;
    for (let n = 0; performance.now() - tChurn < o.churnSeconds * 1000; n++) {
      const due = tChurn + n * tick;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      if (inFlight >= 32) continue; // the API server is behind: skip rather than pile up
      const kind = n % 3;
      const op1 = async () => {
        if (kind === 0) {
          const p = {
            index: s.pods + o.burst + n,
            namespace: namespaceName(n % s.namespaces),
            name: `churn-${n}`,
            labels: { app: `churn-${n}` },
            node: simNodeName(1 + (n % simCount)),
            ip: podIp(s.pods + o.burst + n),
          };
          await createPod(admin, p);
          churned.push(p);
        } else if (kind === 1) {
          const p = base[(n * 7919) % base.length];
          await admin.must(
            "PATCH",
            `/api/v1/namespaces/${p.namespace}/pods/${p.name}`,
            { metadata: { labels: { churn: `v${n}` } } },
            "application/merge-patch+json",
          );
        } else {
          const p = churned.shift();
          if (p)
            await admin.must(
              "DELETE",
              `/api/v1/namespaces/${p.namespace}/pods/${p.name}?gracePeriodSeconds=0`,
            );
        }
        ops++;
      };
      inFlight++;
      void op1()
        .catch((err) => {
          churnError ??= err;
        })
        .finally(() => inFlight--);
    }
    await until("churn requests to finish", async () => inFlight === 0, 60_000, 20);
    if (churnError) throw churnError;
    const churnSeconds = (performance.now() - tChurn) / 1000;
    await sleep(1500);
    const churnRates = rates(audit, churnSeconds);
    const churnAllocated =
      sampleValue(await op.metrics(), "sluice_operator_identities_allocated_total") - allocatedBeforeChurn;
    log(`churn: ${ops} operations in ${churnSeconds.toFixed(1)} s, ${churnAllocated} identities allocated`);

    // Every label set in use has exactly one identity once the operator caught up.
    await until("the operator's queues to drain", queueIdle, 300_000, 500);
    const used = await usedLabelSets(admin);
    const census = await until(
      "every used label set to have an identity",
      async () => {
        const c = await identityCensus(admin);
        return [...used].every((h) => c.hashes.has(h)) ? c : undefined;
      },
      120_000,
      1000,
    ).catch(async () => identityCensus(admin));
    const missing = [...used].filter((h) => !census.hashes.has(h)).length;

    const am2 = await agentMetrics();
    const om = await op.metrics();
    return {
      shape: s,
      populate: pop,
      ceiling,
      operator: {
        syncMs,
        initialAllocationMs,
        initialLabelSets,
        rssAfterAllocation,
        rss: op.rssBytes(),
        heapUsed: sampleValue(om, "nodejs_heap_size_used_bytes"),
        heapTotal: sampleValue(om, "nodejs_heap_size_total_bytes"),
        external: sampleValue(om, "nodejs_external_memory_bytes"),
        newSpace: sampleValue(om, "nodejs_heap_space_size_total_bytes", { space: "new" }),
        cpuSeconds: sampleValue(om, "process_cpu_seconds_total"),
      },
      agent: {
        ...agent,
        rssEnd: sampleValue(am2, "process_resident_memory_bytes"),
        cpuSecondsAfterSteady: sampleValue(am2, "process_cpu_seconds_total") - agentCpuAtSteady,
        passesAfterSteady: sampleValue(am2, "sluice_agent_reconcile_duration_seconds_count") - passesAtSteady,
        compileMsPerPass:
          (1000 *
            (sampleValue(am2, "sluice_agent_reconcile_phase_duration_seconds_sum", { phase: "compile" }) -
              compileAtSteady)) /
          Math.max(1, sampleValue(am2, "sluice_agent_reconcile_duration_seconds_count") - passesAtSteady),
      },
      policyChange,
      burst: { labelSets: o.burst, createMs, allocMs, deleteMs, gcMs, gcDeleted },
      churn: { ops, seconds: churnSeconds, allocated: churnAllocated },
      identities: { live: census.live, duplicates: census.duplicates, missing, usedLabelSets: used.size },
      api: { steady, churn: churnRates, policyChange: changeRates },
    };
  } finally {
    await runUndo();
    unregister();
  }
}

// The label sets of every pod in the API server (paged), as the operator computes them.
async function usedLabelSets(http: ApiHttp): Promise<Set<string>> {
  const nsLabels = new Map<string, { metadata: { name?: string; labels?: Record<string, string> } }>();
  const list = async <T>(path: string, each: (o: T) => void) => {
    let cont = "";
    do {
      const r = await http.must<{ items: T[]; metadata: { continue?: string } }>(
        "GET",
        `${path}?limit=2000${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`,
      );
      for (const o of r.body.items) each(o);
      cont = r.body.metadata.continue ?? "";
    } while (cont);
  };
  type Meta = {
    metadata: { name?: string; namespace?: string; labels?: Record<string, string> };
    spec?: { hostNetwork?: boolean };
  };
  await list<Meta>("/api/v1/namespaces", (n) => nsLabels.set(n.metadata.name ?? "", n));
  const out = new Set<string>();
  await list<Meta>("/api/v1/pods", (p) => {
    if (p.spec?.hostNetwork) return;
    out.add(labelSetHash(securityLabels(p, nsLabels.get(p.metadata.namespace ?? ""))));
  });
  return out;
}
