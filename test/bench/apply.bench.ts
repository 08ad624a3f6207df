// kubectl apply → enforced benchmark (issue 4 §7): one node, a kube-mode agent against a real
// kube-apiserver; 100 edits of a NetworkPolicy whose ingress port changes each time, timed from just
// before the write (before kubectl is spawned) until the agent's pinned maps hold an active-generation
// entry for the new port (maps polled in process every ~1 ms). Writers: the kubectl CLI (a process
// spawn per apply; client-side apply as users type it, the same with a cold discovery cache, and
// --server-side) and an in-process server-side apply through @kubernetes/client-node. The baselines are the same writes alone,
// measured in the same iterations: until `kubectl apply` exits / until the apply call returns.
// Where the time goes: the benchmark's own watch on the policy (an informer like the agent's) stamps
// when the API server delivers the change, so "enforced − delivered" approximates the agent's share
// (its own watch through the lab's API bridge, queue, compile, map write, plus the poll interval; it
// can be negative when the agent's watch is the faster one); `kubectl version --client` (no request
// at all) is the floor a kubectl process costs. Target: p99 < 100 ms. Metrics on vs off: the same
// client-node writes with the agent restarted with --metrics-addr 0, then with its server on and
// scraped every SCRAPE_MS (default 1000 ms: 30 times the chart's ServiceMonitor rate; SCRAPE_MS=100 for a
// stress figure) from inside its node's namespace, alternating rounds so that drift falls on both. Run as root:
//   node --disable-warning=ExperimentalWarning test/bench/apply.bench.ts   (env APPLIES, default 100)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KubernetesObject, KubeConfig, KubernetesObjectApi } from "@kubernetes/client-node";
import { loadAddon } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import type { DatapathMaps } from "../../operator/src/datapath/kernel/maps.ts";
import { openPinnedMaps } from "../../operator/src/datapath/kernel/maps.ts";
import { readApplied, viewApplied } from "../../operator/src/datapath/writer/sync.ts";
import { applyObject } from "../../operator/src/kube/apply.ts";
import { Informer } from "../../operator/src/kube/informer.ts";
import { NETWORK_POLICIES } from "../../operator/src/kube/resources.ts";
import type { Lab } from "../../operator/src/lab/lab.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";
import { kubectl } from "../../operator/src/lab/cluster-setup.ts";
import { type Child, NODE, NODE_FLAGS, spawnIn, stopChild } from "../../operator/src/lab/children.ts";
import { createLabCluster, kubectlOk } from "../../operator/src/lab/cluster-setup.ts";
import { machine, markdownTable, ratio, requireRoot } from "./table.ts";

const APPLIES = Number(process.env.APPLIES ?? 100);
const WARMUP = 5;
const TIMEOUT_MS = 10_000;
const NS = "bench";
const NODE_NAME = "n1";
const SCRAPE_MS = Number(process.env.SCRAPE_MS ?? 1000);
const METRICS_ROUNDS = 2;

// One node, one namespace, a server and a client pod (the shape `kubectl get ns,pods -o yaml` prints).
const pods = [
  { name: "server", ip: "10.244.1.10", port: 8080 },
  { name: "client", ip: "10.244.1.11", port: 9000 },
].map((p) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name: p.name, namespace: NS, labels: { app: p.name } },
  spec: {
    nodeName: NODE_NAME,
    containers: [{ name: "c", ports: [{ name: "http", containerPort: p.port }] }],
  },
  status: { podIP: p.ip, podIPs: [{ ip: p.ip }] },
}));
const topologyObjects = [
  { apiVersion: "v1", kind: "Namespace", metadata: { name: NS, labels: { team: "bench" } } },
  ...pods,
];

function policy(port: number) {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: "bench-ingress", namespace: NS },
    spec: {
      podSelector: { matchLabels: { app: "server" } },
      policyTypes: ["Ingress"],
      ingress: [
        { from: [{ podSelector: { matchLabels: { app: "client" } } }], ports: [{ protocol: "TCP", port }] },
      ],
    },
  };
}

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

const TCP = 6;
function enforced(maps: DatapathMaps, port: number): boolean {
  return viewApplied(readApplied(maps)).endpoints.some((e) =>
    e.entries.some((x) => x.direction === "ingress" && x.port === port && x.protocol === TCP),
  );
}

// The endpoints' policy revisions: one hash lookup each. Every policy change the agent writes
// rewrites an endpoint entry with a new revision, so only a changed revision calls for the full read
// (which walks every policy map: polled each millisecond it would starve the agent it measures).
function revisions(maps: DatapathMaps, ifindexes: readonly number[]): string {
  return ifindexes.map((ifindex) => maps.endpoints.get({ ifindex })?.policy_rev ?? -1).join(",");
}

// Polls the maps every ~1 ms until the port is enforced; resolves with the time it was seen.
async function waitEnforced(maps: DatapathMaps, port: number, t0: number): Promise<number> {
  const ifindexes = [...readApplied(maps).endpoints.keys()];
  let revs = "";
  for (;;) {
    const now = revisions(maps, ifindexes);
    if (now !== revs) {
      revs = now;
      if (enforced(maps, port)) return performance.now();
    }
    if (performance.now() - t0 > TIMEOUT_MS)
      throw new Error(`port ${port} not enforced after ${TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

interface Sample {
  write: number; // the write alone: kubectl exited / apply call returned
  delivered: number; // the write → the change arrives on a watch (the benchmark's own informer)
  enforced: number; // the write → entry active in the maps
}

// When the benchmark's own watch first saw the policy with each port.
const deliveredAt = new Map<number, number>();

function watchPolicy(kc: KubeConfig): Informer<KubernetesObject> {
  const inf = new Informer<KubernetesObject>(kc, NETWORK_POLICIES, { namespace: NS });
  const stamp = (o: KubernetesObject) => {
    const port = (o as ReturnType<typeof policy>).spec?.ingress?.[0]?.ports?.[0]?.port;
    if (typeof port === "number" && !deliveredAt.has(port)) deliveredAt.set(port, performance.now());
  };
  inf.on("add", stamp);
  inf.on("update", stamp);
  inf.start();
  return inf;
}

async function measure(
  maps: DatapathMaps,
  firstPort: number,
  write: (port: number) => Promise<void>,
): Promise<Sample[]> {
  const out: Sample[] = [];
  for (let i = 0; i < WARMUP + APPLIES; i++) {
    const port = firstPort + i;
    const t0 = performance.now();
    const seen = waitEnforced(maps, port, t0);
    await write(port);
    const tWrite = performance.now();
    const tSeen = await seen;
    // The agent's watch may beat the benchmark's own: wait for it too.
    while (!deliveredAt.has(port)) {
      if (performance.now() - t0 > TIMEOUT_MS) throw new Error(`port ${port} never delivered on the watch`);
      await new Promise((r) => setTimeout(r, 1));
    }
    const tDelivered = deliveredAt.get(port)!;
    if (i >= WARMUP) out.push({ write: tWrite - t0, delivered: tDelivered - t0, enforced: tSeen - t0 });
  }
  return out;
}

// The floor of any kubectl invocation: process start and flag parsing, no request.
async function kubectlFloor(kc: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < WARMUP + APPLIES; i++) {
    const t0 = performance.now();
    const r = await kubectl(["version", "--client", "-o", "json"], kc);
    if (r.code !== 0) throw new Error(`kubectl version --client: ${r.stderr}`);
    if (i >= WARMUP) out.push(performance.now() - t0);
  }
  return out;
}

// Scrapes the agent's /metrics every SCRAPE_MS from inside its node's namespace until stopped; its
// stdout is one line per failed scrape.
function startScraper(lab: Lab): Child {
  const address = lab.agentMetricsAddress(NODE_NAME);
  if (!address) throw new Error("the agent serves no metrics");
  const netns = lab.plan.nodes.find((n) => n.name === NODE_NAME)!.netns;
  const script =
    "setInterval(() => fetch(process.argv[1]).then((r) => r.text())" +
    '.catch((e) => process.stdout.write(e.message + "\\n")), Number(process.argv[2]));';
  return spawnIn(netns, "metrics scraper", [
    NODE,
    ...NODE_FLAGS,
    "-e",
    script,
    `http://${address}/metrics`,
    String(SCRAPE_MS),
  ]);
}

// The agent restarted with its metrics server off, then on and scraped, METRICS_ROUNDS times.
async function metricsOnOff(
  lab: Lab,
  kc: string,
  m: DatapathMaps,
  write: (port: number) => Promise<void>,
): Promise<{ off: Sample[]; on: Sample[] }> {
  const off: Sample[] = [];
  const on: Sample[] = [];
  let port = 10_000;
  for (let round = 0; round < METRICS_ROUNDS; round++) {
    await lab.stopAgent(NODE_NAME);
    await lab.startKubeAgent(NODE_NAME, kc, 60_000, ["--metrics-addr", "0"]);
    off.push(...(await measure(m, port, write)));
    port += 1000;
    await lab.stopAgent(NODE_NAME);
    await lab.startKubeAgent(NODE_NAME, kc);
    const scraper = startScraper(lab);
    let failures = "";
    scraper.proc.stdout?.setEncoding("utf8").on("data", (d: string) => {
      failures += d;
    });
    try {
      on.push(...(await measure(m, port, write)));
    } finally {
      await stopChild(scraper, 5000);
    }
    if (failures) throw new Error(`scrapes failed: ${failures}`);
    port += 1000;
  }
  return { off, on };
}

async function main(): Promise<void> {
  requireRoot("apply.bench");
  let api: ApiServer | undefined;
  let lab: Lab | undefined;
  let maps: DatapathMaps | undefined;
  let watch: Informer<KubernetesObject> | undefined;
  try {
    api = await startApiServer();
    const kc = api.kubeconfigPath;
    lab = await createLabCluster(api, topologyObjects);
    await lab.startKubeAgent(NODE_NAME, kc);
    maps = openPinnedMaps(loadAddon(), lab.nodeBpffsRoot(NODE_NAME));
    const m = maps;
    const config = new KubeConfig();
    config.loadFromFile(kc);
    watch = watchPolicy(config);
    await watch.waitForSync(30_000);

    const floor = await kubectlFloor(kc);
    const viaKubectl = await measure(m, 1000, (port) =>
      kubectlOk(["apply", "-f", "-"], kc, JSON.stringify(policy(port))).then(() => {}),
    );
    const viaKubectlSsa = await measure(m, 2000, (port) =>
      kubectlOk(
        ["apply", "--server-side", "--field-manager", "bench-ssa", "--force-conflicts", "-f", "-"],
        kc,
        JSON.stringify(policy(port)),
      ).then(() => {}),
    );

    // What a warm discovery cache saves: the same apply with an empty --cache-dir each time.
    const coldDir = mkdtempSync(join(tmpdir(), "sluice-apply-bench-"));
    const viaKubectlCold = await measure(m, 5000, (port) =>
      kubectlOk(["apply", "-f", "-"], kc, JSON.stringify(policy(port)), {
        cacheDir: join(coldDir, String(port)),
      }).then(() => {}),
    ).finally(() => rmSync(coldDir, { recursive: true, force: true }));

    const objects = KubernetesObjectApi.makeApiClient(config);
    const ssa = async (port: number) => {
      await applyObject(objects, policy(port), "sluice-apply-bench");
    };
    const viaClient = await measure(m, 3000, ssa);
    const metrics = await metricsOnOff(lab, kc, m, ssa);

    const stat = (xs: number[]) => ({
      p50: percentile(xs, 50),
      p99: percentile(xs, 99),
      max: Math.max(...xs),
    });
    const fl = stat(floor);
    const ms = (x: number) => `${x.toFixed(1)} ms`;
    const row = (what: string, s: ReturnType<typeof stat>, base: ReturnType<typeof stat>) => [
      what,
      ms(s.p50),
      ms(s.p99),
      ms(s.max),
      ratio(s.p50, base.p50),
      ratio(s.p99, base.p99),
    ];
    const rows: string[][] = [row("floor: `kubectl version --client` (no request)", fl, fl)];
    const verdicts: string[] = [];
    const shares: string[] = [];
    for (const [name, label, samples] of [
      ["a", "`kubectl apply`", viaKubectl],
      ["a'", "`kubectl apply --server-side`", viaKubectlSsa],
      ["a''", "`kubectl apply`, cold discovery cache", viaKubectlCold],
      ["b", "client-node server-side apply", viaClient],
    ] as const) {
      const w = stat(samples.map((s) => s.write));
      const d = stat(samples.map((s) => s.delivered));
      const e = stat(samples.map((s) => s.enforced));
      const agent = stat(samples.map((s) => s.enforced - s.delivered));
      rows.push(
        row(`baseline: ${label} returns`, w, w),
        row(`(${name}) ${label} → delivered on a watch`, d, w),
        row(`(${name}) ${label} → enforced in the maps`, e, w),
      );
      verdicts.push(`(${name}) ${e.p99 < 100 ? "met" : "MISSED"} (${ms(e.p99)})`);
      shares.push(`(${name}) ${ms(agent.p50)} / ${ms(agent.p99)}`);
    }
    console.log(`# kubectl apply → enforced: ${APPLIES} applies (after ${WARMUP} warm-up), 1 node`);
    console.log(`machine: ${await machine()}\n`);
    console.log(markdownTable(["what", "p50", "p99", "max", "p50 × baseline", "p99 × baseline"], rows));
    console.log(`\ntarget p99 < 100 ms: ${verdicts.join(", ")}`);
    console.log(`agent's share (enforced − delivered) p50 / p99: ${shares.join(", ")}`);

    const offE = stat(metrics.off.map((s) => s.enforced));
    const onE = stat(metrics.on.map((s) => s.enforced));
    const offA = stat(metrics.off.map((s) => s.enforced - s.delivered));
    const onA = stat(metrics.on.map((s) => s.enforced - s.delivered));
    console.log(
      `\n## metrics on vs off: client-node server-side apply → enforced, ${metrics.off.length} applies each ` +
        `(${METRICS_ROUNDS} alternating rounds, agent restarted for each)\n`,
    );
    console.log(
      markdownTable(
        ["what", "p50", "p99", "max", "p50 × baseline", "p99 × baseline"],
        [
          row("baseline: `--metrics-addr 0` (no server, nothing recorded)", offE, offE),
          row(`metrics on, /metrics scraped every ${SCRAPE_MS} ms`, onE, offE),
          row("agent's share (enforced − delivered), metrics off", offA, offA),
          row("agent's share (enforced − delivered), metrics on", onA, offA),
        ],
      ),
    );
  } finally {
    await watch?.stop();
    maps?.close();
    await lab?.destroy();
    await api?.stop();
  }
}

await main();
