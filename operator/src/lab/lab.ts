// A running lab: namespaces wired from a plan, a server in every pod, optionally one agent per node
// (static, enforcing policy files, or against an API server), and probes between every pair of pods.
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatPort, type MatrixRow, type ProbePort } from "../api/matrix-rows.ts";
import { DEFAULT_BPFFS } from "../datapath/kernel/bpffs.ts";
import { API_BRIDGE_SCRIPT, bridgeUnixToTcp } from "./api-bridge.ts";
import {
  type Child,
  collect,
  firstLine,
  labScript,
  NODE,
  NODE_FLAGS,
  SLUICE_MAIN,
  signalChild,
  spawnIn,
  stopChild,
  tail,
} from "./children.ts";
import { registerCleanup } from "./cleanup.ts";
import { mapLimit } from "./exec.ts";
import { createNetns, deleteNetns, existingNetns, wireNetns } from "./netns.ts";
import { type LabPlan, NETNS_PREFIX, newRunId, type PodPlan, planLab, probeAddress } from "./netns-plan.ts";
import type { ProbeRequest, ProbeResponse, ProbeTarget } from "./probe-protocol.ts";
import { sctpAvailable } from "./sctp.ts";
import { forgetRun, labWorkDirPrefix, recordRun } from "./stale.ts";
import type { LabTopology } from "./topology.ts";

export const BPFFS_LAB_PREFIX = join(DEFAULT_BPFFS, "sluice-lab-");

export interface LabOptions {
  // Extra ports every pod listens on (besides its container ports), e.g. from --ports.
  extraPorts?: ProbePort[];
  log?: (line: string) => void;
  runId?: string;
  // Extra `sluice agent` flags for every agent this lab starts (e.g. --attach-mode tc).
  agentArgs?: string[];
  // Environment added for every agent this lab starts (the scale rig: the image's, image/env).
  agentEnv?: Record<string, string>;
  // Appends each agent's stderr to <agentLogDir>/agent-<node>.log (a long-lived lab keeps its logs).
  agentLogDir?: string;
  // The `sluice` entry point agents run (see Lab.agentMain).
  agentMain?: string;
  // `--allow-localhost` of every agent this lab starts (the agent's default, always, when not given).
  allowLocalhost?: "always" | "policy";
  // Static agents serve `sluice monitor` too (Kubernetes-mode agents always do): the demo reads their
  // flows. Off by default, since a test reading the pinned ring buffer itself needs it to itself.
  staticMonitor?: boolean;
}

export interface ProbeOptions {
  // Probe these instead of each destination's container ports.
  ports?: ProbePort[];
  // Probe the pods' IPv4 or IPv6 address instead of the primary one.
  family?: 4 | 6;
  tcpTimeoutMs?: number;
  udpTimeoutMs?: number;
  udpTries?: number;
  // Only these source pods (keys); default all.
  from?: string[];
}

export interface ProbeReport {
  results: MatrixRow[];
  // Probes not sent, with why (SCTP without kernel support, no address of the family).
  skipped: Array<{ from: string; to: string; port: number; protocol: string; reason: string }>;
  // Unexpected answers (refused, another pod answered): verdicts stay, but they deserve a look.
  notes: string[];
  durationMs: number;
}

export interface ServerStats {
  udpStreams: Record<string, number>;
  tcpBytes: number;
  tcpConnections: number;
  tcpErrors: string[];
}

interface Agent {
  node: string;
  child: Child;
  readyFile: string;
  // Where the agent serves /metrics, /healthz and /readyz, in its node's namespace (ready file).
  metrics?: string;
  // Where it serves flows for `sluice monitor` (ready file): a unix socket, reachable from the host.
  monitor?: string;
}

// What an agent's --ready-file holds (cli/agent.ts): the static agent's counts, the bound address.
interface AgentReady {
  endpoints?: number;
  metrics?: string;
  monitor?: string;
}

export class Lab {
  readonly plan: LabPlan;
  readonly topology: LabTopology;
  readonly bpffsRoot: string;
  readonly workDir: string;
  private readonly log: (line: string) => void;
  private readonly agentArgs: readonly string[];
  private readonly agentEnv: Readonly<Record<string, string>> | undefined;
  private readonly agentLogDir: string | undefined;
  private readonly staticMonitor: boolean;
  // The `sluice` entry point the next agents run: an upgrade test starts an older build's first.
  agentMain: string;
  // The next agents' --allow-localhost (LabOptions.allowLocalhost; undefined: the agent's default).
  allowLocalhost: "always" | "policy" | undefined;
  private readonly servers = new Map<string, Child>();
  private readonly bridges: Child[] = [];
  private hostBridge: Server | undefined;
  private readonly agents = new Map<string, Agent>();
  private readonly netns: string[] = [];
  private readonly unregister: () => void;
  private destroying: Promise<void> | undefined;
  private readonly serverPorts: Map<string, ProbePort[]>;

  private constructor(topology: LabTopology, opts: LabOptions) {
    this.topology = topology;
    this.plan = planLab(topology, opts.runId ?? newRunId());
    this.bpffsRoot = `${BPFFS_LAB_PREFIX}${this.plan.runId}`;
    this.workDir = mkdtempSync(join(tmpdir(), labWorkDirPrefix(this.plan.runId)));
    this.log = opts.log ?? (() => {});
    this.agentArgs = opts.agentArgs ?? [];
    this.agentEnv = opts.agentEnv;
    this.allowLocalhost = opts.allowLocalhost;
    this.agentLogDir = opts.agentLogDir;
    this.staticMonitor = opts.staticMonitor ?? false;
    this.agentMain = opts.agentMain ?? SLUICE_MAIN;
    this.serverPorts = new Map(
      topology.pods.map((p) => {
        const ports = [...p.ports];
        for (const x of opts.extraPorts ?? [])
          if (!ports.some((y) => y.port === x.port && y.protocol === x.protocol)) ports.push(x);
        return [p.key, ports];
      }),
    );
    this.unregister = registerCleanup(() => this.destroy());
  }

  // Builds the namespaces and starts the pod servers. On failure everything created is removed.
  static async create(topology: LabTopology, opts: LabOptions = {}): Promise<Lab> {
    if (process.getuid?.() !== 0) throw new Error("sluice lab needs root (network namespaces and BPF)");
    const lab = new Lab(topology, opts);
    try {
      recordRun(lab.plan.runId);
      const t0 = performance.now();
      await createNetns(lab.plan, (ns) => lab.netns.push(ns));
      await wireNetns(lab.plan);
      const t1 = performance.now();
      await mapLimit(lab.plan.pods, 8, (p) => lab.startServer(p));
      lab.log(
        `lab ${lab.plan.runId}: ${lab.plan.nodes.length} nodes, ${lab.plan.pods.length} pods wired in ${Math.round(t1 - t0)} ms, servers up in ${Math.round(performance.now() - t1)} ms`,
      );
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  pod(key: string): PodPlan {
    const p = this.plan.pods.find((x) => x.pod.key === key);
    if (!p) throw new Error(`no pod ${key} in the lab`);
    return p;
  }

  nodeBpffsRoot(node: string): string {
    const i = this.plan.nodes.findIndex((n) => n.name === node);
    if (i < 0) throw new Error(`no node ${node} in the lab`);
    return join(this.bpffsRoot, `node${i}`);
  }

  private async startServer(p: PodPlan): Promise<void> {
    const ports = (this.serverPorts.get(p.pod.key) ?? []).map(formatPort).join(",");
    const child = spawnIn(p.netns, `server ${p.pod.key}`, [
      NODE,
      ...NODE_FLAGS,
      labScript("pod-server.ts"),
      p.pod.key,
      ports,
    ]);
    this.servers.set(p.pod.key, child);
    const line = await firstLine(child, 15000);
    if (line !== "ready") throw new Error(`server ${p.pod.key}: unexpected "${line}"`);
  }

  // Starts one static agent per node (in the node's namespace) enforcing `files`, and waits until
  // each has attached and written its maps.
  async startAgents(files: readonly string[], timeoutMs = 60000): Promise<void> {
    await Promise.all(this.plan.nodes.map((n) => this.startAgent(n.name, files, timeoutMs)));
  }

  async startAgent(node: string, files: readonly string[], timeoutMs = 60000): Promise<void> {
    await this.launchAgent(node, ["--static", ...files.flatMap((f) => ["-f", f])], timeoutMs);
  }

  // Starts the agent in Kubernetes mode on a node; connectApiServer() must have run.
  // extraArgs: more `sluice agent` flags for this agent only (e.g. --metrics-addr 0).
  async startKubeAgent(
    node: string,
    kubeconfig: string,
    timeoutMs = 60000,
    extraArgs: readonly string[] = [],
  ): Promise<void> {
    if (!this.hostBridge) throw new Error("connectApiServer() before starting a Kubernetes-mode agent");
    await this.launchAgent(node, ["--kubeconfig", kubeconfig, ...extraArgs], timeoutMs);
  }

  // Makes an API server on the host's loopback reachable at the same address from every node's
  // namespace (see api-bridge.ts), so agents there can use the host's kubeconfig unchanged.
  async connectApiServer(server: string): Promise<void> {
    if (this.hostBridge) return;
    const url = new URL(server);
    const sock = join(this.workDir, "api.sock");
    this.hostBridge = await bridgeUnixToTcp(sock, url.hostname, Number(url.port));
    for (const n of this.plan.nodes) {
      const b = spawnIn(n.netns, `api bridge ${n.name}`, [
        NODE,
        ...NODE_FLAGS,
        API_BRIDGE_SCRIPT,
        `${url.hostname}:${url.port}`,
        sock,
      ]);
      this.bridges.push(b);
      await firstLine(b, 10000);
    }
  }

  // Spawns `sluice agent <modeArgs>` in the node's namespace and waits for its ready file.
  private async launchAgent(node: string, modeArgs: readonly string[], timeoutMs: number): Promise<void> {
    if (this.agents.has(node)) throw new Error(`agent on ${node} is already running`);
    const plan = this.plan.nodes.find((n) => n.name === node);
    if (!plan) throw new Error(`no node ${node} in the lab`);
    const root = this.nodeBpffsRoot(node);
    mkdirSync(root, { recursive: true });
    const readyFile = join(this.workDir, `ready-${plan.fabricPeerIf}-${Date.now()}.json`);
    const args = [NODE, ...NODE_FLAGS, this.agentMain, "agent", ...modeArgs];
    args.push("--node", node, "--bpffs-root", root, "--ready-file", readyFile, ...this.agentArgs);
    if (this.allowLocalhost) args.push("--allow-localhost", this.allowLocalhost);
    // A free port on the namespace's loopback, found in the ready file: the agents of a lab never
    // contend for :9962, nor expose it on the fabric. An older build (upgrade tests) has no server.
    if (this.agentMain === SLUICE_MAIN && !args.includes("--metrics-addr"))
      args.push("--metrics-addr", "127.0.0.1:0");
    // The monitor on a unix socket: a path, unlike a port on the namespace's loopback, that the host's
    // `sluice monitor` reaches (static agents only with LabOptions.staticMonitor). A lab's traffic is a
    // few probes: every allowed packet is reported too, not 1 in 100.
    if (
      this.agentMain === SLUICE_MAIN &&
      (this.staticMonitor || !modeArgs.includes("--static")) &&
      !args.includes("--monitor-addr")
    ) {
      args.push("--monitor-addr", `unix:${join(this.workDir, `monitor-${plan.fabricPeerIf}.sock`)}`);
      if (!args.includes("--event-sample-allow")) args.push("--event-sample-allow", "1");
    }
    const child = spawnIn(plan.netns, `agent ${node}`, args, this.agentEnv);
    child.proc.stdout?.resume();
    if (this.agentLogDir)
      child.proc.stderr?.pipe(createWriteStream(join(this.agentLogDir, `agent-${node}.log`), { flags: "a" }));
    this.agents.set(node, { node, child, readyFile });
    const t0 = performance.now();
    for (;;) {
      if (existsSync(readyFile)) {
        let ready: AgentReady;
        try {
          ready = JSON.parse(readFileSync(readyFile, "utf8")) as AgentReady;
        } catch {
          await sleep(20); // written but not complete yet
          continue;
        }
        const agent = this.agents.get(node);
        if (agent) Object.assign(agent, { metrics: ready.metrics, monitor: ready.monitor });
        this.log(
          `agent ${node}: ready with ${ready.endpoints ?? "?"} endpoints in ${Math.round(performance.now() - t0)} ms` +
            (ready.metrics ? `, metrics at ${ready.metrics} in its namespace` : ""),
        );
        return;
      }
      if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
        this.agents.delete(node);
        throw new Error(`agent ${node} exited before it was ready${tail(child)}`);
      }
      if (performance.now() - t0 > timeoutMs)
        throw new Error(`agent ${node}: not ready after ${timeoutMs} ms${tail(child)}`);
      await sleep(25);
    }
  }

  // Stops agents (SIGTERM: they leave pins and links, so enforcement continues) or kills them.
  async stopAgents(signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> {
    await Promise.all([...this.agents.keys()].map((n) => this.stopAgent(n, signal)));
  }

  async stopAgent(node: string, signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<{ code: number | null }> {
    const a = this.agents.get(node);
    if (!a) throw new Error(`no agent running on ${node}`);
    this.agents.delete(node);
    if (signal === "SIGKILL") signalChild(a.child, "SIGKILL");
    else await stopChild(a.child, 10000);
    const { code } = await a.child.exited;
    return { code };
  }

  // host:port of the running agent's /metrics, /healthz and /readyz, in its node's namespace.
  agentMetricsAddress(node: string): string | undefined {
    return this.agents.get(node)?.metrics;
  }

  // unix:<path> of the running agent's monitor (GET /v1/flows), from the host.
  agentMonitorAddress(node: string): string | undefined {
    return this.agents.get(node)?.monitor;
  }

  // GET of an agent's /metrics, /healthz or /readyz. The agent listens in its node's namespace, which
  // the host cannot reach: a node process entered into that namespace makes the request.
  async agentHttp(node: string, path: string, timeoutMs = 10000): Promise<{ status: number; body: string }> {
    const address = this.agentMetricsAddress(node);
    if (!address) throw new Error(`agent on ${node}: not running, or serving no metrics`);
    const netns = this.plan.nodes.find((n) => n.name === node)!.netns;
    const script =
      "const r = await fetch(process.argv[1]);" +
      "process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() }));";
    const child = spawnIn(netns, `agent http ${node}`, [
      NODE,
      ...NODE_FLAGS,
      "--input-type=module",
      "-e",
      script,
      `http://${address}${path}`,
    ]);
    return JSON.parse(await collect(child, "", timeoutMs)) as { status: number; body: string };
  }

  // Nodes whose agent process is alive.
  runningAgents(): string[] {
    return [...this.agents.values()]
      .filter((a) => a.child.proc.exitCode === null && a.child.proc.signalCode === null)
      .map((a) => a.node);
  }

  // Probes every pod from every other pod on every port with real packets.
  async probe(opts: ProbeOptions = {}): Promise<ProbeReport> {
    const t0 = performance.now();
    for (const [key, server] of this.servers)
      if (server.proc.exitCode !== null || server.proc.signalCode !== null)
        throw new Error(`the server in ${key} has exited${tail(server)}`);
    const skipped: ProbeReport["skipped"] = [];
    const sctp =
      opts.ports?.some((p) => p.protocol === "SCTP") ||
      this.topology.pods.some((p) => p.ports.some((x) => x.protocol === "SCTP"))
        ? sctpAvailable()
        : false;
    const perSource = new Map<string, ProbeTarget[]>();
    const rows: MatrixRow[] = [];
    for (const from of this.topology.pods) {
      if (opts.from && !opts.from.includes(from.key)) continue;
      const targets: ProbeTarget[] = [];
      for (const to of this.topology.pods) {
        // Between host-network pods nothing is enforced (no endpoint): `sluice matrix` has no row either.
        if (to.key === from.key || (to.hostNetwork && from.hostNetwork)) continue;
        const ip = probeAddress(to, opts.family);
        for (const port of opts.ports ?? to.ports) {
          const row = { from: from.key, to: to.key, port: port.port, protocol: port.protocol };
          if (!ip || (opts.family && !probeAddress(from, opts.family))) {
            skipped.push({ ...row, reason: `no IPv${opts.family} address` });
            continue;
          }
          if (port.protocol === "SCTP") {
            skipped.push({
              ...row,
              reason: sctp ? "SCTP probes are not implemented" : "the kernel has no SCTP",
            });
            continue;
          }
          targets.push({ id: rows.length, ip, port: port.port, protocol: port.protocol, expectKey: to.key });
          rows.push({ ...row, verdict: "deny" });
        }
      }
      perSource.set(from.key, targets);
    }
    const notes: string[] = [];
    await mapLimit([...perSource], 16, async ([key, probes]) => {
      if (probes.length === 0) return;
      const res = await this.runProber(this.pod(key).netns, `prober ${key}`, probes, opts);
      for (const r of res.results) {
        const row = rows[r.id];
        row.verdict = r.verdict;
        if (r.note)
          notes.push(`${row.from} -> ${row.to} ${row.port}/${row.protocol}: ${r.verdict} (${r.note})`);
      }
    });
    return { results: rows, skipped, notes, durationMs: performance.now() - t0 };
  }

  // Probes pods from a node's own network namespace, as the node's stack (kubelet probes) connects:
  // from one of the node's addresses. Rows are from "node:<name>"; opts.from is ignored. Every pod by
  // default (those of other nodes through the fabric), or the pods in `to`.
  async probeFromNode(node: string, opts: ProbeOptions & { to?: string[] } = {}): Promise<ProbeReport> {
    const t0 = performance.now();
    const plan = this.plan.nodes.find((n) => n.name === node);
    if (!plan) throw new Error(`no node ${node} in the lab`);
    const from = `node:${node}`;
    const rows: MatrixRow[] = [];
    const skipped: ProbeReport["skipped"] = [];
    const targets: ProbeTarget[] = [];
    for (const to of this.topology.pods) {
      if (opts.to && !opts.to.includes(to.key)) continue;
      const ip = probeAddress(to, opts.family);
      for (const port of opts.ports ?? to.ports) {
        const row = { from, to: to.key, port: port.port, protocol: port.protocol };
        if (!ip || port.protocol === "SCTP") {
          skipped.push({
            ...row,
            reason: ip ? "SCTP probes are not implemented" : `no IPv${opts.family} address`,
          });
          continue;
        }
        targets.push({ id: rows.length, ip, port: port.port, protocol: port.protocol, expectKey: to.key });
        rows.push({ ...row, verdict: "deny" });
      }
    }
    const notes: string[] = [];
    if (targets.length > 0) {
      const res = await this.runProber(plan.netns, `prober ${from}`, targets, opts);
      for (const r of res.results) {
        const row = rows[r.id];
        row.verdict = r.verdict;
        if (r.note) notes.push(`${from} -> ${row.to} ${row.port}/${row.protocol}: ${r.verdict} (${r.note})`);
      }
    }
    return { results: rows, skipped, notes, durationMs: performance.now() - t0 };
  }

  // Runs the prober (pod-prober.ts) in a network namespace on a list of targets.
  private async runProber(
    netns: string,
    name: string,
    probes: ProbeTarget[],
    opts: ProbeOptions,
  ): Promise<ProbeResponse> {
    const request: ProbeRequest = {
      probes,
      tcpTimeoutMs: opts.tcpTimeoutMs ?? 1500,
      udpTimeoutMs: opts.udpTimeoutMs ?? 400,
      udpTries: opts.udpTries ?? 3,
    };
    const child = spawnIn(netns, name, [NODE, ...NODE_FLAGS, labScript("pod-prober.ts")]);
    return JSON.parse(await collect(child, JSON.stringify(request), 60000)) as ProbeResponse;
  }

  // Counters of a pod's server (the sink of live-replacement traffic).
  async serverStats(key: string): Promise<ServerStats> {
    const child = this.servers.get(key);
    if (!child) throw new Error(`no server in ${key}`);
    const answer = firstLine(child, 5000);
    child.proc.stdin!.write("stats\n");
    return JSON.parse(await answer) as ServerStats;
  }

  // Runs a command inside a pod's or node's namespace and returns its output.
  async exec(
    netns: string,
    name: string,
    argv: readonly string[],
    input = "",
    timeoutMs = 120000,
  ): Promise<string> {
    return collect(spawnIn(netns, name, argv), input, timeoutMs);
  }

  // Stops every process, deletes every namespace and the bpffs root. Idempotent; never throws for
  // one failure before trying the rest.
  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    const errors: string[] = [];
    const children = [
      ...[...this.agents.values()].map((a) => a.child),
      ...this.servers.values(),
      ...this.bridges.splice(0),
    ];
    this.agents.clear();
    this.servers.clear();
    await Promise.all(children.map((c) => stopChild(c, 3000)));
    this.hostBridge?.close();
    this.hostBridge = undefined;
    // Every namespace of this run, also one whose creation a signal interrupted.
    const prefix = `${NETNS_PREFIX}${this.plan.runId}-`;
    const ours = new Set([...this.netns, ...existingNetns().filter((n) => n.startsWith(prefix))]);
    errors.push(...(await deleteNetns([...ours])));
    try {
      rmSync(this.bpffsRoot, { recursive: true, force: true });
    } catch (err) {
      errors.push(`rm ${this.bpffsRoot}: ${(err as Error).message}`);
    }
    rmSync(this.workDir, { recursive: true, force: true });
    if (errors.length === 0) forgetRun(this.plan.runId);
    this.unregister();
    this.log(`lab ${this.plan.runId}: removed`);
    if (errors.length > 0) throw new Error(`lab cleanup: ${errors.join("; ")}`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
