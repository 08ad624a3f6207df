// Memory of the daemons (issue 14 §1): RSS and V8 heap of `sluice agent` and `sluice operator`, run from
// the sources (Node strips the types, as bin/sluice and the tests run them) and from the esbuild bundle
// the image runs (scripts/bundle.mjs, built by this benchmark into a temporary directory), the bundle
// again with the image's environment (image/env: jemalloc preloaded as malloc), in the same run against
// the same real kube-apiserver. Two states: idle (one node, 4 pods the agent enforces on
// real veth pairs, one NetworkPolicy) and at scale (SCALE_PODS pods on other nodes in SCALE_NS
// namespaces, SCALE_POLICIES policies, the identities the operator allocates for them). Each daemon is
// started fresh for each row, waited on until /readyz answers 200, left SETTLE_S seconds, then sampled:
// RSS from /proc/<pid>/status (VmRSS), the heap from its own /metrics (nodejs_heap_size_used_bytes).
// A first table says which modules cost what: a fresh Node importing one module (or one daemon's code)
// and collecting garbage twice; the baseline is bare Node in the same run. Run as root:
//   node --expose-gc --disable-warning=ExperimentalWarning test/bench/memory.bench.ts
//   (env SCALE_PODS default 2000, SCALE_NS 40, SCALE_POLICIES 200, SETTLE_S 10)
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { applyCrds, kubectlOk } from "../../operator/src/lab/cluster-setup.ts";
import { type ApiServer, repoRoot, startApiServer } from "../support/apiserver.ts";
import { hostImageEnv } from "../support/image-env.ts";
import { machine, markdownTable, median, ratio, requireRoot } from "./table.ts";

requireRoot("memory.bench");

const SCALE_PODS = Number(process.env.SCALE_PODS ?? 2000);
const SCALE_NS = Number(process.env.SCALE_NS ?? 40);
const SCALE_POLICIES = Number(process.env.SCALE_POLICIES ?? 200);
const SETTLE_S = Number(process.env.SETTLE_S ?? 10);
const NODE_NAME = "mem-n1";
const NS = "mem";
const LOCAL_PODS = 4;
const NODE_FLAGS = ["--disable-warning=ExperimentalWarning"];
const MiB = 1024 * 1024;
const mib = (b: number) => (b / MiB).toFixed(1);

// ---- which modules cost what ------------------------------------------------------------------------

interface Footprint {
  rss: number;
  heapUsed: number;
}

// A fresh Node that imports `specifiers` (in order), collects garbage and reports; nothing else runs.
function footprint(specifiers: readonly string[]): Footprint {
  const script =
    `for (const s of ${JSON.stringify(specifiers)}) await import(s);` +
    "globalThis.gc(); globalThis.gc(); await new Promise((r) => setTimeout(r, 200)); globalThis.gc();" +
    "const m = process.memoryUsage(); process.stdout.write(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed }));";
  const out = execFileSync(
    process.execPath,
    [...NODE_FLAGS, "--expose-gc", "--input-type=module", "-e", script],
    {
      cwd: repoRoot,
      encoding: "utf8",
    },
  );
  return JSON.parse(out) as Footprint;
}

function bestOf(n: number, specifiers: readonly string[]): Footprint {
  const runs = Array.from({ length: n }, () => footprint(specifiers));
  return { rss: median(runs.map((r) => r.rss)), heapUsed: median(runs.map((r) => r.heapUsed)) };
}

// The chunk esbuild made for a dynamic import of `source` (cli/agent.ts, cli/operator.ts).
function chunkOf(bundleDir: string, source: string): string {
  const meta = JSON.parse(readFileSync(join(bundleDir, "meta.json"), "utf8")) as {
    outputs: Record<string, { entryPoint?: string }>;
  };
  const hit = Object.entries(meta.outputs).find(([, o]) => o.entryPoint === source);
  if (!hit) throw new Error(`no chunk for ${source} in ${bundleDir}/meta.json`);
  return join(repoRoot, hit[0]);
}

// The chunk holding most of a package: what that package costs in the bundle, imported by itself.
function largestChunkOf(bundleDir: string, pkg: string): string {
  const meta = JSON.parse(readFileSync(join(bundleDir, "meta.json"), "utf8")) as {
    outputs: Record<string, { inputs: Record<string, { bytesInOutput: number }> }>;
  };
  const bytes = (o: { inputs: Record<string, { bytesInOutput: number }> }) =>
    Object.entries(o.inputs)
      .filter(([i]) => i.includes(`node_modules/${pkg}/`))
      .reduce((sum, [, x]) => sum + x.bytesInOutput, 0);
  const [best] = Object.entries(meta.outputs).sort((a, b) => bytes(b[1]) - bytes(a[1]));
  if (!best || bytes(best[1]) === 0) throw new Error(`no chunk holds ${pkg}`);
  return join(repoRoot, best[0]);
}

function moduleTable(bundleDir: string): string {
  const url = (p: string) => new URL(`file://${p}`).href;
  const src = (p: string) => url(join(repoRoot, "operator/src", p));
  const chunk = (source: string) => url(chunkOf(bundleDir, source));
  const rows: [string, string[]][] = [
    ["bare Node (baseline)", []],
    ["pino", ["pino"]],
    ["prom-client", ["prom-client"]],
    ["yaml", ["yaml"]],
    ["ajv + ajv-formats", ["ajv", "ajv-formats"]],
    ["@kubernetes/client-node (index)", ["@kubernetes/client-node"]],
    // What `sluice agent` (Kubernetes mode) and `sluice operator` import, lazily imported parts included.
    [
      "sources: the agent (cli/agent.ts, agent/kube-agent.ts)",
      [src("cli/agent.ts"), src("agent/kube-agent.ts")],
    ],
    ["sources: the operator (cli/operator.ts)", [src("cli/operator.ts")]],
    [
      "bundle: the agent's chunks",
      [chunk("operator/src/cli/agent.ts"), chunk("operator/src/agent/kube-agent.ts")],
    ],
    ["bundle: the operator's chunks", [chunk("operator/src/cli/operator.ts")]],
    [
      "bundle: the chunk with client-node and undici alone",
      [url(largestChunkOf(bundleDir, "@kubernetes/client-node"))],
    ],
  ];
  const measured = rows.map(([name, specs]) => [name, bestOf(3, specs)] as const);
  const base = measured[0][1];
  return markdownTable(
    ["imported", "RSS MiB", "added MiB", "ratio (RSS)", "heap used MiB"],
    measured.map(([name, f]) => [
      name,
      mib(f.rss),
      name.startsWith("bare") ? "" : `+${mib(f.rss - base.rss)}`,
      ratio(f.rss, base.rss),
      mib(f.heapUsed),
    ]),
  );
}

// ---- the daemons --------------------------------------------------------------------------------------

interface Daemon {
  proc: ChildProcess;
  address: Promise<string>;
  log: () => string;
}

function startDaemon(main: string, args: readonly string[], env: Record<string, string> = {}): Daemon {
  const proc = spawn(process.execPath, [...NODE_FLAGS, main, ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...env },
  });
  let stderr = "";
  const address = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no metrics address logged:\n${stderr}`)), 60_000);
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      // The agent logs "address", the operator "metrics_addr".
      const m = /"(?:address|metrics_addr)":"(127\.0\.0\.1:\d+)"/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${main} ${args[0]} exited (${code}):\n${stderr.slice(-3000)}`));
    });
  });
  address.catch(() => {});
  return { proc, address, log: () => stderr };
}

async function stopDaemon(d: Daemon): Promise<void> {
  if (d.proc.exitCode !== null || d.proc.signalCode !== null) return;
  const exited = new Promise((r) => d.proc.once("exit", r));
  d.proc.kill("SIGTERM");
  const timer = setTimeout(() => d.proc.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

async function untilReady(d: Daemon, what: string, timeoutMs = 120_000): Promise<string> {
  const address = await d.address;
  const t0 = Date.now();
  for (;;) {
    const r = await fetch(`http://${address}/readyz`).catch(() => undefined);
    if (r?.status === 200) return address;
    const body = r ? await r.text() : "no answer";
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what} not ready: ${body}\n${d.log().slice(-3000)}`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

function vmRss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

async function heapUsed(address: string): Promise<number> {
  const text = await (await fetch(`http://${address}/metrics`)).text();
  const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
  if (!m) throw new Error("no nodejs_heap_size_used_bytes in /metrics");
  return Number(m[1]);
}

// Five samples a second apart after SETTLE_S seconds idle; the median of each.
async function sample(d: Daemon, address: string): Promise<Footprint> {
  await new Promise((r) => setTimeout(r, SETTLE_S * 1000));
  const rss: number[] = [];
  const heap: number[] = [];
  for (let i = 0; i < 5; i++) {
    heap.push(await heapUsed(address));
    rss.push(vmRss(d.proc.pid!));
    await new Promise((r) => setTimeout(r, 1000));
  }
  return { rss: median(rss), heapUsed: median(heap) };
}

// ---- the cluster ----------------------------------------------------------------------------------------

// Pods of this node get veth pairs in the host namespace (unique names, a private /32 each): the agent
// finds them by route as it finds a CNI's, and attaches its programs to the host side.
const veth = (i: number) => `smem${i}`;
const podIp = (i: number) => `10.251.0.${10 + i}`;

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: "pipe" });
}

function removeVeths(): void {
  for (let i = 0; i < LOCAL_PODS; i++) {
    try {
      ip("link", "del", veth(i));
    } catch {}
  }
}

function pod(ns: string, name: string, node: string, podIP: string, labels: Record<string, string>): V1Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: ns, labels },
    spec: { nodeName: node, containers: [{ name: "c", image: "pause", ports: [{ containerPort: 8080 }] }] },
    status: { phase: "Running", podIP, podIPs: [{ ip: podIP }] },
  };
}

async function createPods(core: CoreV1Api, pods: readonly V1Pod[], concurrency = 16): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < pods.length) {
        const p = pods[next++];
        const ns = p.metadata!.namespace!;
        await core.createNamespacedPod({ namespace: ns, body: { ...p, status: undefined } });
        await core.replaceNamespacedPodStatus({
          name: p.metadata!.name!,
          namespace: ns,
          body: {
            ...(await core.readNamespacedPod({ name: p.metadata!.name!, namespace: ns })),
            status: p.status,
          },
        });
      }
    }),
  );
}

function networkPolicy(ns: string, name: string, app: string, from: string, port: number): object {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name, namespace: ns },
    spec: {
      podSelector: { matchLabels: { app } },
      policyTypes: ["Ingress"],
      ingress: [
        { from: [{ podSelector: { matchLabels: { app: from } } }], ports: [{ port, protocol: "TCP" }] },
      ],
    },
  };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "sluice-memory-bench-"));
  const bundleDir = join(work, "bundle");
  execFileSync(process.execPath, ["scripts/bundle.mjs", "--outdir", bundleDir], {
    cwd: repoRoot,
    stdio: "pipe",
  });
  const header = `Machine: ${await machine()}`;
  console.log(`${header}\n\nWhich modules cost what (a fresh Node importing them, after gc; median of 3):\n`);
  console.log(moduleTable(bundleDir));

  // The image runs the bundle with jemalloc preloaded (image/env); the bundle with glibc's malloc
  // prices the allocator, the sources the bundling.
  const builds = [
    { name: "sources", main: join(repoRoot, "operator/src/cli/main.ts"), env: {} },
    { name: "bundle", main: join(bundleDir, "main.mjs"), env: {} },
    { name: "bundle + jemalloc (the image)", main: join(bundleDir, "main.mjs"), env: hostImageEnv() },
  ];
  const pinRoot = `/sys/fs/bpf/sluice-memory-bench-${process.pid}`;
  let api: ApiServer | undefined;
  const live = new Set<Daemon>();
  removeVeths();
  try {
    api = await startApiServer();
    const kc = new KubeConfig();
    kc.loadFromFile(api.kubeconfigPath);
    const core = kc.makeApiClient(CoreV1Api);
    await applyCrds(api.kubeconfigPath);
    for (let i = 0; i < LOCAL_PODS; i++) {
      ip("link", "add", veth(i), "type", "veth", "peer", "name", `${veth(i)}p`);
      ip("link", "set", veth(i), "up");
      ip("link", "set", `${veth(i)}p`, "up");
      ip("route", "add", `${podIp(i)}/32`, "dev", veth(i));
    }
    await core.createNode({ body: { apiVersion: "v1", kind: "Node", metadata: { name: NODE_NAME } } });
    await core.createNamespace({ body: { metadata: { name: NS, labels: { team: "mem" } } } });
    await createPods(
      core,
      Array.from({ length: LOCAL_PODS }, (_, i) =>
        pod(NS, `p${i}`, NODE_NAME, podIp(i), { app: i % 2 ? "client" : "server" }),
      ),
    );
    await kubectlOk(
      ["apply", "-f", "-"],
      api.kubeconfigPath,
      JSON.stringify(networkPolicy(NS, "allow", "server", "client", 8080)),
    );

    const daemonArgs = {
      operator: ["operator", "--kubeconfig", api.kubeconfigPath, "--metrics-addr", "127.0.0.1:0"],
      agent: [
        "agent",
        "--node",
        NODE_NAME,
        "--bpffs-root",
        pinRoot,
        "--kubeconfig",
        api.kubeconfigPath,
        "--metrics-addr",
        "127.0.0.1:0",
      ],
    };
    // One row per daemon and build: the other daemon runs from the sources meanwhile (the agent needs
    // the operator's identities to become ready; the operator is measured with one agent reporting).
    const measure = async (state: string) => {
      const rows: { role: string; build: string; f: Footprint }[] = [];
      for (const role of ["agent", "operator"] as const) {
        for (const b of builds) {
          const other = role === "agent" ? "operator" : "agent";
          const helper = startDaemon(builds[0].main, daemonArgs[other]);
          live.add(helper);
          const d = startDaemon(b.main, daemonArgs[role], b.env);
          live.add(d);
          const address = await untilReady(d, `${b.name} ${role}`);
          await untilReady(helper, `sources ${other}`);
          const f = await sample(d, address);
          rows.push({ role, build: b.name, f });
          console.error(
            `[memory] ${state} ${role} ${b.name}: RSS ${mib(f.rss)} MiB, heap ${mib(f.heapUsed)} MiB`,
          );
          await stopDaemon(d);
          await stopDaemon(helper);
          live.delete(d);
          live.delete(helper);
        }
      }
      return rows;
    };

    const idle = await measure("idle");

    // At scale: pods on other nodes (no interfaces here: the agent keeps their identities and IPs),
    // namespaces with a few label sets, policies selecting them.
    const scalePods: V1Pod[] = [];
    for (let n = 0; n < SCALE_NS; n++)
      await core.createNamespace({ body: { metadata: { name: `s${n}`, labels: { team: `t${n % 8}` } } } });
    for (let i = 0; i < SCALE_PODS; i++) {
      const ns = `s${i % SCALE_NS}`;
      scalePods.push(
        pod(ns, `p${i}`, `mem-n${2 + (i % 50)}`, `10.252.${i >> 8}.${i & 255}`, {
          app: `a${i % 10}`,
          tier: `t${i % 3}`,
        }),
      );
    }
    for (let n = 0; n < 50; n++)
      await core.createNode({
        body: { apiVersion: "v1", kind: "Node", metadata: { name: `mem-n${2 + n}` } },
      });
    await createPods(core, scalePods);
    const policies = Array.from({ length: SCALE_POLICIES }, (_, i) =>
      JSON.stringify(
        networkPolicy(`s${i % SCALE_NS}`, `np${i}`, `a${i % 10}`, `a${(i + 1) % 10}`, 8000 + (i % 100)),
      ),
    );
    await kubectlOk(["apply", "-f", "-"], api.kubeconfigPath, policies.join("\n---\n"));
    const scale = await measure("at scale");

    const table = (rows: typeof idle) =>
      markdownTable(
        ["daemon", "build", "RSS MiB", "ratio (RSS)", "heap used MiB", "ratio (heap)"],
        rows.map((r) => {
          const base = rows.find((x) => x.role === r.role && x.build === "sources")!.f;
          return [
            r.role,
            r.build,
            mib(r.f.rss),
            ratio(r.f.rss, base.rss),
            mib(r.f.heapUsed),
            ratio(r.f.heapUsed, base.heapUsed),
          ];
        }),
      );
    console.log(
      `\nIdle: 1 node, ${LOCAL_PODS} pods enforced on veths, 1 NetworkPolicy (baseline: the sources; ` +
        `median of 5 samples after ${SETTLE_S} s ready):\n`,
    );
    console.log(table(idle));
    console.log(
      `\nAt scale: + ${SCALE_PODS} pods on 50 other nodes in ${SCALE_NS} namespaces, ${SCALE_POLICIES} NetworkPolicies:\n`,
    );
    console.log(table(scale));
  } finally {
    for (const d of live) await stopDaemon(d);
    try {
      execFileSync(
        process.execPath,
        [
          ...NODE_FLAGS,
          join(repoRoot, "operator/src/cli/main.ts"),
          "datapath",
          "remove",
          "--bpffs-root",
          pinRoot,
        ],
        {
          stdio: "pipe",
        },
      );
    } catch {}
    removeVeths();
    rmSync(pinRoot, { recursive: true, force: true });
    await api?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
