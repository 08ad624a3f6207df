// The chained CNI plugin against a real kube-apiserver, a real operator and a Kubernetes-mode agent
// started with --cni-socket, in a one-node lab. Pods are set up as a container runtime does: a network
// namespace, then Debian's real plugins (ptp, bridge, with host-local IPAM) exec'd with CNI_COMMAND=ADD,
// the config on stdin, inside the node's namespace, then the built sluice-cni with their result as
// prevResult. When sluice-cni returns, the pod's endpoint is in the maps with its identity, its
// addresses in the ipcache (the Pod's status still has none) and its program on the pod's veth (not
// the bridge); the first packets from and to the pod get the policy's verdicts. sluice-cni waits for a
// pod the agent does not know yet, and fails (error JSON naming the pod) when the agent does not
// know it in time or does not run at all; DEL always succeeds.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test, type TestContext } from "node:test";
import { DatapathPins } from "../../operator/src/datapath/kernel/pins.ts";
import { declarationsPath } from "../../operator/src/agent/cni-server.ts";
import { loadAddon } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import { enums } from "../../operator/src/datapath/codec/layout.generated.ts";
import { type DatapathMaps, openPinnedMaps } from "../../operator/src/datapath/kernel/maps.ts";
import { readApplied } from "../../operator/src/datapath/writer/sync.ts";
import { loadKubeConfig, makeClients } from "../../operator/src/kube/client.ts";
import {
  type Child,
  collect,
  labScript,
  NODE,
  NODE_FLAGS,
  spawnIn,
  stopChild,
} from "../../operator/src/lab/children.ts";
import { createLabCluster, kubectlOk } from "../../operator/src/lab/cluster-setup.ts";
import type { Lab } from "../../operator/src/lab/lab.ts";
import type { ProbeRequest, ProbeResponse } from "../../operator/src/lab/probe-protocol.ts";
import type { Operator } from "../../operator/src/controllers/run.ts";
import { ReservedIdentity } from "../../operator/src/policy/mapstate.ts";
import { type ApiServer, repoRoot, startApiServer } from "../support/apiserver.ts";
import { privilegeProblem } from "../support/privileged.ts";
import { startTestOperator, waitFor } from "./operator-helpers.ts";

const CNI_PATH = "/usr/lib/cni";
const NODE_NAME = "node-a";

function toolProblem(): string | undefined {
  for (const p of ["ptp", "bridge", "host-local"])
    if (!existsSync(join(CNI_PATH, p)))
      return `${CNI_PATH}/${p} is missing (apt-get install containernetworking-plugins)`;
  return undefined;
}

const skip = privilegeProblem() ?? toolProblem();
if (skip && process.env.CI === "true") throw new Error(`cni-chain integration cannot run under CI: ${skip}`);

const pod = (name: string, labels: Record<string, string>, ip: string | undefined, port: number) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: "shop", labels },
  spec: {
    nodeName: NODE_NAME,
    containers: [{ name: "c", image: "registry.k8s.io/pause:3.10", ports: [{ containerPort: port }] }],
  },
  ...(ip ? { status: { podIP: ip, podIPs: [{ ip }] } } : {}),
});

// The lab's pods (registered with their addresses, as a kubelet would have posted them).
const TOPOLOGY = [
  { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop", labels: { team: "shop" } } },
  pod("web", { app: "web" }, "10.99.0.10", 80),
  pod("db", { app: "db" }, "10.99.0.11", 5432),
  // An older backend: the label set app=backend has its identity before the new pods come.
  pod("backend-0", { app: "backend" }, "10.99.0.12", 8080),
];

// db takes 5432 from backends only; backends take 8080 from web only and reach db:5432 only.
const POLICIES = [
  {
    apiVersion: "sluice.dev/v1alpha1",
    kind: "SecurityPolicy",
    metadata: { name: "db", namespace: "shop" },
    spec: {
      endpointSelector: { matchLabels: { app: "db" } },
      ingress: [
        {
          endpoints: [{ endpointSelector: { matchLabels: { app: "backend" } } }],
          ports: [{ port: 5432, protocol: "TCP" }],
        },
      ],
    },
  },
  {
    apiVersion: "sluice.dev/v1alpha1",
    kind: "SecurityPolicy",
    metadata: { name: "backend", namespace: "shop" },
    spec: {
      endpointSelector: { matchLabels: { app: "backend" } },
      ingress: [
        {
          endpoints: [{ endpointSelector: { matchLabels: { app: "web" } } }],
          ports: [{ port: 8080, protocol: "TCP" }],
        },
      ],
      egress: [
        {
          endpoints: [{ endpointSelector: { matchLabels: { app: "db" } } }],
          ports: [{ port: 5432, protocol: "TCP" }],
        },
      ],
    },
  },
];

let api: ApiServer | undefined;
let lab: Lab | undefined;
let op: Operator | undefined;
let maps: DatapathMaps | undefined;
let work = "";
let cniBin = "";
let socket = "";
let nodeNetns = "";
let runId = "";
const latencies: { pod: string; ms: number }[] = [];

const k = (args: string[], input?: string) => kubectlOk(args, api!.kubeconfigPath, input);

interface Exec {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

// Execs a CNI plugin as a runtime does: environment, config on stdin, in the node's namespace.
function execPlugin(bin: string, env: Record<string, string>, config: unknown): Promise<Exec> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn("nsenter", [`--net=/run/netns/${nodeNetns}`, "--", bin], {
      env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", reject);
    child.stdin.on("error", () => {}); // VERSION exits without reading its stdin
    child.on("close", (code) => resolve({ code, stdout, stderr, ms: performance.now() - t0 }));
    child.stdin.end(JSON.stringify(config));
  });
}

interface SandboxResult {
  interfaces: { name: string; mac?: string; sandbox?: string }[];
  ips: { address: string; interface?: number }[];
}

// A pod sandbox: its network namespace, wired by the cluster's plugin (ptp or bridge).
interface Sandbox {
  name: string;
  netns: string;
  containerId: string;
  env: (command: string) => Record<string, string>;
  mainConfig: Record<string, unknown>;
  result: SandboxResult;
  ip: string;
}

const mainPlugins = {
  ptp: (dataDir: string) => ({
    type: "ptp",
    ipMasq: false,
    ipam: { type: "host-local", subnet: "10.98.1.0/24", routes: [{ dst: "0.0.0.0/0" }], dataDir },
  }),
  bridge: (dataDir: string) => ({
    type: "bridge",
    bridge: `slbr${runId}`,
    isGateway: true,
    isDefaultGateway: true,
    ipMasq: false,
    hairpinMode: false,
    ipam: { type: "host-local", subnet: "10.98.2.0/24", dataDir },
  }),
};

async function sandbox(
  t: TestContext,
  name: string,
  kind: keyof typeof mainPlugins,
  uid = "",
): Promise<Sandbox> {
  // Under the lab's run prefix: the lab removes it with its own namespaces, even after a failure.
  const netns = `sl${runId}-c-${name}`;
  execFileSync("ip", ["netns", "add", netns]);
  t.after(() => {
    try {
      execFileSync("ip", ["netns", "delete", netns], { stdio: "ignore" });
    } catch {}
  });
  const containerId = randomBytes(32).toString("hex");
  const env = (command: string) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: `/run/netns/${netns}`,
    CNI_IFNAME: "eth0",
    CNI_PATH,
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=${containerId}${uid ? `;K8S_POD_UID=${uid}` : ""}`,
  });
  const mainConfig = {
    cniVersion: "1.0.0",
    name: `sluice-chain-${runId}-${kind}`,
    ...mainPlugins[kind](join(work, `ipam-${kind}`)),
  };
  const r = await execPlugin(join(CNI_PATH, kind), env("ADD"), mainConfig);
  assert.equal(r.code, 0, `${kind} ADD: ${r.stdout} ${r.stderr}`);
  const result = JSON.parse(r.stdout) as SandboxResult;
  t.after(async () => {
    await execPlugin(join(CNI_PATH, kind), env("DEL"), mainConfig);
  });
  const ip = result.ips[0].address.split("/")[0];
  t.diagnostic(`${kind} ADD for ${name}: ${r.ms.toFixed(0)} ms, ${result.ips[0].address}`);
  return { name, netns, containerId, env, mainConfig, result, ip };
}

function sluiceConfig(s: Sandbox, over: Record<string, unknown> = {}) {
  return {
    cniVersion: "1.0.0",
    name: s.mainConfig.name,
    type: "sluice-cni",
    socket,
    timeoutSeconds: 30,
    ...over,
    prevResult: s.result,
  };
}

async function podUid(name: string): Promise<string> {
  return JSON.parse(await k(["get", "pod", "-n", "shop", name, "-o", "json"])).metadata.uid;
}

async function probe(netns: string, probes: { ip: string; port: number; expectKey: string }[]) {
  const req: ProbeRequest = {
    probes: probes.map((p, id) => ({ id, protocol: "TCP", ...p })),
    tcpTimeoutMs: 1500,
    udpTimeoutMs: 400,
    udpTries: 1,
  };
  const child = spawnIn(netns, `prober in ${netns}`, [NODE, ...NODE_FLAGS, labScript("pod-prober.ts")]);
  const res = JSON.parse(await collect(child, JSON.stringify(req), 30_000)) as ProbeResponse;
  return res.results.sort((a, b) => a.id - b.id).map((r) => r.verdict);
}

// The pod's "container": a server on 8080 answering with the pod's key (it binds before eth0 exists).
async function startServer(t: TestContext, s: Sandbox): Promise<void> {
  const child: Child = spawnIn(s.netns, `server ${s.name}`, [
    NODE,
    ...NODE_FLAGS,
    labScript("pod-server.ts"),
    `shop/${s.name}`,
    "8080/TCP",
  ]);
  t.after(() => stopChild(child, 3000));
  const out = child.proc.stdout!;
  out.setEncoding("utf8");
  await new Promise<void>((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`server ${s.name} not ready`)), 15_000);
    out.on("data", (d: string) => {
      buf += d;
      if (buf.includes("ready\n")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

const applied = () => readApplied(maps!);
const hostVeth = (s: Sandbox, bridge?: string) =>
  s.result.interfaces.filter((i) => !i.sandbox && i.name !== bridge).map((i) => i.name);
const ifindexIn = (netns: string, ifname: string): number =>
  (
    JSON.parse(
      execFileSync("ip", ["-n", netns, "-j", "link", "show", "dev", ifname], { encoding: "utf8" }),
    ) as {
      ifindex: number;
    }[]
  )[0].ifindex;

before(async () => {
  if (skip) return;
  cniBin = execFileSync("bash", [join(repoRoot, "scripts/cni-build.sh")], { encoding: "utf8" }).trim();
  work = mkdtempSync(join(tmpdir(), "sluice-cni-chain-"));
  socket = join(work, "run", "cni.sock");
  api = await startApiServer();
  lab = await createLabCluster(api, TOPOLOGY, { agentArgs: ["--cni-socket", socket], agentLogDir: work });
  runId = lab.plan.runId;
  nodeNetns = lab.plan.nodes[0].netns;
  // Identities come from the operator, as in a cluster: a new label set has none until it allocates one.
  op = await startTestOperator(makeClients(loadKubeConfig(api.kubeconfigPath)), `cni-chain-${runId}`);
  await k(["apply", "-f", "-"], POLICIES.map((p) => JSON.stringify(p)).join("\n---\n"));
  await lab.startKubeAgent(NODE_NAME, api.kubeconfigPath);
  maps = openPinnedMaps(loadAddon(), lab.nodeBpffsRoot(NODE_NAME));
  await waitFor(
    "the lab's 3 endpoints enforced with the operator's identities",
    () => {
      const eps = [...applied().endpoints.values()];
      return eps.length === 3 && eps.every((e) => e.identity >= ReservedIdentity.CLUSTER_MIN);
    },
    60_000,
  );
});

// The agent's log lines about CNI requests (one per add/del/check, with its duration).
// The agent's JSON log lines about CNI requests (one per request, with its fields and duration).
interface CniLogLine {
  msg: string;
  op?: string;
  endpoint?: string;
  container?: string;
  iface?: string;
  ifindex?: number;
  ips?: string[];
  duration_ms?: number;
}

function agentCniLog(): CniLogLine[] {
  const path = join(work, `agent-${NODE_NAME}.log`);
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as CniLogLine)
    .filter((l) => l.msg.startsWith("cni "));
}

after(async () => {
  if (process.env.SLUICE_TEST_AGENT_LOG === "1" && work)
    process.stderr.write(`${readFileSync(join(work, `agent-${NODE_NAME}.log`), "utf8")}\n`);
  maps?.close();
  await op?.stop();
  await lab?.destroy();
  await api?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
  if (latencies.length)
    process.stderr.write(
      `# CNI ADD latency (sluice-cni exec → answer): ${latencies.map((l) => `${l.pod} ${l.ms.toFixed(1)} ms`).join(", ")}\n`,
    );
});

test("the plugin's Go unit tests pass", { skip }, () => {
  const gobin = existsSync("/usr/local/go/bin/go") ? "/usr/local/go/bin/go" : "go";
  const r = spawnSync(gobin, ["test", "-count=1", "./..."], {
    cwd: join(repoRoot, "cni"),
    env: { ...process.env, GOFLAGS: "-mod=readonly", GOTOOLCHAIN: "local", CGO_ENABLED: "0" },
    encoding: "utf8",
  });
  assert.equal(r.status, 0, `go test in cni/:\n${r.stdout}${r.stderr}${r.error ?? ""}`);
});

test("VERSION: 0.4.0, 1.0.0 and 1.1.0", { skip }, async () => {
  const r = await execPlugin(cniBin, { CNI_COMMAND: "VERSION" }, { cniVersion: "1.0.0" });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).supportedVersions, ["0.4.0", "1.0.0", "1.1.0"]);
});

for (const kind of ["ptp", "bridge"] as const) {
  test(`${kind}: when sluice-cni returns, the pod is enforced on its veth from its first packet`, {
    skip,
  }, async (t) => {
    const name = `backend-${kind}`;
    await k(["apply", "-f", "-"], JSON.stringify(pod(name, { app: "backend" }, undefined, 8080)));
    t.after(() => k(["delete", "pod", "-n", "shop", name, "--wait=false"]).catch(() => {}));
    const uid = await podUid(name);
    const s = await sandbox(t, name, kind, uid);
    await startServer(t, s);
    const bridge = kind === "bridge" ? `slbr${runId}` : undefined;
    const [veth] = hostVeth(s, bridge);
    assert.ok(veth, `${kind} reports a host veth: ${JSON.stringify(s.result.interfaces)}`);
    const ifindex = ifindexIn(nodeNetns, veth);

    const r = await execPlugin(cniBin, s.env("ADD"), sluiceConfig(s));
    assert.equal(r.code, 0, `sluice-cni ADD: ${r.stdout} ${r.stderr}`);
    latencies.push({ pod: name, ms: r.ms });
    t.diagnostic(`sluice-cni ADD ${name}: ${r.ms.toFixed(1)} ms`);

    // At once, before any packet: the endpoint with the backends' identity, its address in the
    // ipcache (the Pod's status has none: kubelet posts it after CNI returns), its program on the veth.
    const state = applied();
    const ep = state.endpoints.get(ifindex);
    assert.ok(ep, `an endpoint on ${veth} #${ifindex}`);
    const backend0 = [...state.endpoints.values()].find((e) => e !== ep && e.identity === ep.identity);
    assert.ok(backend0, "the same identity as backend-0 (app=backend)");
    assert.ok(ep.identity >= ReservedIdentity.CLUSTER_MIN);
    assert.equal(state.ipcache.get(`${s.ip}/32`), ep.identity, "the declared address maps to the identity");
    const status = JSON.parse(await k(["get", "pod", "-n", "shop", name, "-o", "json"])).status;
    assert.equal(status.podIPs, undefined, "the Pod has no addresses in its status yet");
    const links = new DatapathPins(lab!.nodeBpffsRoot(NODE_NAME)).links().filter((l) => l.ifname === veth);
    assert.deepEqual(links.map((l) => l.hook).sort(), ["egress", "ingress"], `programs on ${veth}`);
    if (bridge)
      assert.ok(
        !new DatapathPins(lab!.nodeBpffsRoot(NODE_NAME)).links().some((l) => l.ifname === bridge),
        "none on the bridge",
      );
    // The result is prevResult, unchanged (the CNI library leaves out an empty "dns").
    const { dns, ...prev } = s.result as SandboxResult & { dns?: object };
    assert.deepEqual(dns, {});
    assert.deepEqual(JSON.parse(r.stdout), prev, "sluice-cni prints prevResult");

    // The first packets, both ways; a denied TCP probe has every SYN dropped, the first included.
    const web = lab!.pod("shop/web");
    const db = lab!.pod("shop/db");
    const [out, fromWeb, fromDb] = await Promise.all([
      probe(s.netns, [
        { ip: db.pod.primaryIp, port: 5432, expectKey: "shop/db" },
        { ip: web.pod.primaryIp, port: 80, expectKey: "shop/web" },
      ]),
      probe(web.netns, [{ ip: s.ip, port: 8080, expectKey: `shop/${name}` }]),
      probe(db.netns, [{ ip: s.ip, port: 8080, expectKey: `shop/${name}` }]),
    ]);
    assert.deepEqual(
      out,
      ["allow", "deny"],
      "from the pod: db:5432 allowed (by db's policy on its identity), web:80 denied",
    );
    assert.deepEqual(fromWeb, ["allow"], "web → pod:8080 allowed");
    assert.deepEqual(fromDb, ["deny"], "db → pod:8080 denied");
    // The pod's own program judged both directions.
    const V = enums.sl_verdict;
    const D = enums.sl_dir;
    for (const dir of [D.SL_DIR_INGRESS, D.SL_DIR_EGRESS])
      for (const verdict of [V.SL_VERDICT_ALLOW, V.SL_VERDICT_DENY])
        assert.ok(
          maps!.counters.total(ep.slot, dir, verdict).packets > 0n,
          `counter dir ${dir} verdict ${verdict}`,
        );

    // CHECK: the agent enforces the endpoint on the veth prevResult names.
    const check = await execPlugin(cniBin, s.env("CHECK"), sluiceConfig(s));
    assert.equal(check.code, 0, `CHECK: ${check.stdout} ${check.stderr}`);

    if (bridge) {
      // A restarted agent finds the declaration again (the route to the pod names only the bridge):
      // the program stays on the veth, none goes on the bridge.
      await lab!.stopAgent(NODE_NAME);
      await lab!.startKubeAgent(NODE_NAME, api!.kubeconfigPath);
      const again = applied().endpoints.get(ifindex);
      assert.equal(again?.identity, ep.identity, "the endpoint is still on the veth after a restart");
      const pins = new DatapathPins(lab!.nodeBpffsRoot(NODE_NAME)).links();
      assert.equal(pins.filter((l) => l.ifname === veth).length, 2);
      assert.ok(!pins.some((l) => l.ifname === bridge));
      assert.deepEqual(await probe(db.netns, [{ ip: s.ip, port: 8080, expectKey: `shop/${name}` }]), [
        "deny",
      ]);
    }

    // DEL, in the runtime's order (the chain reversed): the declaration goes, DEL succeeds.
    const del = await execPlugin(cniBin, s.env("DEL"), sluiceConfig(s));
    assert.equal(del.code, 0, del.stdout);
    const recheck = await execPlugin(cniBin, s.env("CHECK"), sluiceConfig(s));
    assert.equal(recheck.code, 1, "CHECK fails once the agent forgot the sandbox");
    assert.match(JSON.parse(recheck.stdout).msg, /the agent has no declaration of container/);
    const saved = JSON.parse(readFileSync(declarationsPath(socket), "utf8")).declarations;
    assert.equal(saved[`shop/${name}`], undefined, "the declaration is forgotten");
    // One log line per request, with its fields and duration.
    const lines = await waitFor("the agent's log lines", () => {
      const l = agentCniLog().filter(
        (x) => (x.op === "add" || x.op === "del") && x.endpoint === `shop/${name}`,
      );
      return l.length === 2 && l;
    });
    const [add, delLine] = lines;
    assert.ok(add && delLine);
    assert.equal(add.msg, "cni add: ok");
    assert.match(add.container ?? "", /^\w{12}$/);
    assert.match(add.iface ?? "", /^veth\w+$/);
    assert.ok(Number.isInteger(add.ifindex), "the interface's index");
    assert.deepEqual(add.ips, [s.ip]);
    assert.equal(delLine.msg, "cni del: ok");
    assert.equal(delLine.container, add.container);
    for (const l of lines)
      assert.ok(typeof l.duration_ms === "number" && l.duration_ms >= 0, JSON.stringify(l));
    t.diagnostic(JSON.stringify(add));
  });
}

test("a pod the agent does not know yet: ADD waits for it and its new identity", { skip }, async (t) => {
  const name = "fresh-1";
  const s = await sandbox(t, name, "ptp");
  // ADD first, the Pod after (the agent's watch lags): the answer waits for both the Pod and the
  // operator's identity for its new label set.
  const add = execPlugin(cniBin, s.env("ADD"), sluiceConfig(s));
  await new Promise((r) => setTimeout(r, 300));
  await k(["apply", "-f", "-"], JSON.stringify(pod(name, { app: "fresh" }, undefined, 8080)));
  t.after(() => k(["delete", "pod", "-n", "shop", name, "--wait=false"]).catch(() => {}));
  const r = await add;
  assert.equal(r.code, 0, `sluice-cni ADD: ${r.stdout} ${r.stderr}`);
  t.diagnostic(`sluice-cni ADD ${name} (Pod created 300 ms later, new identity): ${r.ms.toFixed(1)} ms`);
  const ep = applied().endpoints.get(ifindexIn(nodeNetns, hostVeth(s)[0]));
  assert.ok(ep && ep.identity >= ReservedIdentity.CLUSTER_MIN, "enforced with an allocated identity");
  await execPlugin(cniBin, s.env("DEL"), sluiceConfig(s));
});

test("fail closed: an unknown pod times out with the agent's reason; no agent, no pod", {
  skip,
}, async (t) => {
  const s = await sandbox(t, "ghost", "ptp");
  const r = await execPlugin(cniBin, s.env("ADD"), sluiceConfig(s, { timeoutSeconds: 2 }));
  assert.equal(r.code, 1);
  const e = JSON.parse(r.stdout) as { code: number; msg: string };
  assert.equal(e.code, 11, "try again later");
  assert.match(
    e.msg,
    /^sluice-cni: pod shop\/ghost: the Sluice agent refused the pod: the pod is not in the agent's cache yet \(waited 1000 ms\)$/,
  );
  assert.equal((await execPlugin(cniBin, s.env("DEL"), sluiceConfig(s))).code, 0);

  // The agent stops: its socket goes; ADD fails at once, DEL still succeeds.
  await lab!.stopAgent(NODE_NAME);
  assert.ok(!existsSync(socket), "the agent removed its socket");
  const down = await execPlugin(cniBin, s.env("ADD"), sluiceConfig(s));
  assert.equal(down.code, 1);
  const e2 = JSON.parse(down.stdout) as { code: number; msg: string };
  assert.equal(e2.code, 11);
  assert.match(
    e2.msg,
    /^sluice-cni: pod shop\/ghost: the Sluice agent is not running on this node \(no socket .*cni\.sock\)$/,
  );
  assert.ok(down.ms < 2000, `fails at once (${down.ms.toFixed(0)} ms)`);
  assert.equal((await execPlugin(cniBin, s.env("DEL"), sluiceConfig(s))).code, 0);
});
