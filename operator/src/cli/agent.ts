// `sluice agent --node <name> --bpffs-root <dir> [--kubeconfig <path>]`, or with `--static -f <files>`.
// Runs until SIGTERM/SIGINT and leaves the datapath enforcing; in static mode SIGHUP re-reads the files.
import { writeFileSync } from "node:fs";
import { RouteInterfaceResolver } from "../agent/host-interfaces.ts";
import { installCniPlugin } from "../agent/cni-install.ts";
import { type EventSampling, writeEventSampling } from "../agent/datapath-config.ts";
import { AgentMetrics } from "../agent/metrics.ts";
import type { StaticAgent } from "../agent/static-agent.ts";
import type { AttachMode } from "../datapath/kernel/links.ts";
import { describeKeptSizes, type MapSizes } from "../datapath/kernel/map-sizes.ts";
import { type Datapath, loadDatapath } from "../datapath/kernel/programs.ts";
import type { AgentMonitor, AgentMonitorOptions } from "../monitor/agent-monitor.ts";
import {
  DEFAULT_MONITOR_BUFFER,
  formatMonitorAddress,
  MONITOR_ADDR,
  MONITOR_SAMPLING,
  type MonitorListen,
  parseMonitorAddress,
} from "../monitor/server.ts";
import { EventLoopCheck, type HealthCheck } from "../observe/health.ts";
import { createLogger, type Logger, logArgOptions, logSettings, logUsage } from "../observe/log.ts";
import {
  formatListenAddress,
  type ListenAddress,
  newRegistry,
  ObserveServer,
  parseListenAddress,
} from "../observe/server.ts";
import { HOST_ROUTING_MODES, type HostRouting } from "../agent/host-routing.ts";
import { ALLOW_LOCALHOST_MODES, type AllowLocalhost } from "../policy/mapstate.ts";
import { kubeOptions } from "./kube-flags.ts";
import { datapathLimits, mapSizeOptions, mapSizeUsage } from "./map-flags.ts";
import { oneOf, parseCommandArgs, UsageError } from "./usage.ts";

const usage =
  "usage: sluice agent --node <name> --bpffs-root <dir> [--kubeconfig <path>] [--context <name>] [options]\n" +
  "       sluice agent --static -f <file or dir>... --node <name> --bpffs-root <dir> [--events] [options]\n" +
  "options: [--cni-socket <path>]   (Kubernetes mode: where the chained CNI plugin sluice-cni reaches the agent)\n" +
  "         [--cni-bin-dir <dir>]   (install sluice-cni there at start: the node's CNI binary directory)\n" +
  "         [--ready-file <path>] [--event-sample-allow N] [--event-sample-deny N] [--events-per-second N] [--object <bpf.o>]\n" +
  "         [--attach-mode auto|tcx|tc]   (auto: tcx links, tc filters where the kernel refuses tcx)\n" +
  "         [--allow-localhost always|policy]   (always, the default: the node reaches its own pods whatever\n" +
  "                                              the policies say; policy: where a policy allows entity host)\n" +
  "         [--host-routing bpf|kernel]   (bpf, the default: packets between this node's pods whose flow both\n" +
  "                                       ends track go straight into the receiver's namespace; kernel: the\n" +
  "                                       host forwards every packet)\n" +
  "         [--metrics-addr [host]:port|0]   (/metrics, /healthz, /readyz; default :9962, 0: none)\n" +
  `         ${mapSizeUsage}\n` +
  "         [--monitor-addr 127.0.0.1:port|unix:<path>|0] [--monitor-buffer N]   (flows for sluice monitor,\n" +
  "                                          loopback only; default 127.0.0.1:9964, with --static or --events 0;\n" +
  "                                          events then default to 1 of 1 denied, 1 of 100 allowed packets)\n" +
  `         ${logUsage}`;

function count(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new UsageError(`--${name}: ${JSON.stringify(v)} is not a non-negative integer`);
  return n;
}

export async function agentMain(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs({
    args: [...argv],
    options: {
      ...logArgOptions,
      "metrics-addr": { type: "string", default: ":9962" },
      "monitor-addr": { type: "string" },
      "monitor-buffer": { type: "string" },
      static: { type: "boolean", default: false },
      ...kubeOptions,
      file: { type: "string", short: "f", multiple: true },
      node: { type: "string" },
      "bpffs-root": { type: "string" },
      "ready-file": { type: "string" },
      "cni-socket": { type: "string" },
      "cni-bin-dir": { type: "string" },
      object: { type: "string" },
      events: { type: "boolean", default: false },
      "attach-mode": { type: "string", default: "auto" },
      "allow-localhost": { type: "string", default: "always" },
      "host-routing": { type: "string", default: "bpf" },
      ...mapSizeOptions,
      "event-sample-allow": { type: "string" },
      "event-sample-deny": { type: "string" },
      "events-per-second": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  // One ring buffer, one reader: its events go to --events or to the monitor, never split between them.
  if (values.events && values["monitor-addr"] !== undefined && values["monitor-addr"] !== "0")
    throw new UsageError("--monitor-addr: --events reads the flow events already; use one of them");
  // A static agent serves the monitor only when asked (a lab's, the demo's): several run on one host.
  const monitorAddr = values["monitor-addr"] ?? (values.static || values.events ? "0" : MONITOR_ADDR);
  const monitor = parseMonitorAddress(monitorAddr);
  const monitorBuffer = count(values["monitor-buffer"], "monitor-buffer", DEFAULT_MONITOR_BUFFER);
  if (monitorBuffer < 1) throw new UsageError("--monitor-buffer: at least 1 flow");
  // What is reported when nothing says otherwise: every event for --events, denied packets and a
  // sample of allowed ones for the monitor, nothing when no one reads them.
  const defaults = values.events ? { allow: 1, deny: 1 } : monitor ? MONITOR_SAMPLING : { allow: 0, deny: 0 };
  const sampling: EventSampling = {
    sampleAllow: count(values["event-sample-allow"], "event-sample-allow", defaults.allow),
    sampleDeny: count(values["event-sample-deny"], "event-sample-deny", defaults.deny),
    perSecond: count(values["events-per-second"], "events-per-second", 1000),
  };
  const attachMode = values["attach-mode"];
  if (attachMode !== "auto" && attachMode !== "tcx" && attachMode !== "tc")
    throw new UsageError(`--attach-mode: ${JSON.stringify(attachMode)} is not one of auto, tcx, tc`);
  const allowLocalhost = oneOf("--allow-localhost", values["allow-localhost"], ALLOW_LOCALHOST_MODES);
  const hostRouting = oneOf("--host-routing", values["host-routing"], HOST_ROUTING_MODES);
  const limits = datapathLimits(values);
  if (!values.node || !values["bpffs-root"] || (values.static && !values.file?.length))
    throw new UsageError(
      `${values.static && !values.file?.length ? "--static needs -f <files>; " : ""}--node and --bpffs-root are required (see sluice agent --help)`,
    );
  const node = values.node;
  const listen = parseListenAddress(values["metrics-addr"]);
  const log = await createLogger({ ...logSettings(values), base: { component: "agent", node } });
  if (values.static && values["cni-socket"])
    throw new UsageError(
      "--cni-socket: the chained CNI plugin needs the agent in Kubernetes mode (not --static)",
    );
  if (values["cni-bin-dir"]) {
    if (!values["cni-socket"])
      throw new UsageError("--cni-bin-dir: the plugin it installs needs --cni-socket to reach the agent");
    await installCniPlugin(values["cni-bin-dir"]);
  }
  const common = { node, log, listen, readyFile: values["ready-file"] };
  if (!values.static)
    return kubeAgent({
      ...common,
      pinRoot: values["bpffs-root"],
      kubeconfig: values.kubeconfig,
      context: values.context,
      objectPath: values.object,
      sampling,
      attachMode,
      allowLocalhost,
      hostRouting,
      ...limits,
      cniSocket: values["cni-socket"],
      monitor,
      monitorBuffer,
    });
  // The server first, so that probes get an answer (503) while the files are read and enforced.
  const metrics = listen ? new AgentMetrics(newRegistry()) : undefined;
  let agent: StaticAgent | undefined;
  const server = await startObserveServer(
    common,
    metrics,
    {
      name: "policy-written",
      check: () => (agent ? agent.health.ready.check() : "the policy files are not enforced yet"),
    },
    () => agent?.health.live,
  );
  try {
    // Each mode loads its own agent: the static one the manifest reader (yaml), the Kubernetes one
    // the API client; the DaemonSet's agent never pays for the other's.
    const { StaticAgent } = await import("../agent/static-agent.ts");
    agent = await StaticAgent.start({
      files: values.file ?? [],
      node,
      pinRoot: values["bpffs-root"],
      objectPath: values.object,
      attachMode,
      readyFile: values["ready-file"],
      readyInfo: server ? { metrics: formatListenAddress(server.address) } : {},
      onEvent: values.events ? (line) => process.stdout.write(`${line}\n`) : undefined,
      monitor: monitor && { listen: monitor, buffer: monitorBuffer },
      sampling,
      allowLocalhost,
      hostRouting,
      ...limits,
      logger: log,
      metrics,
    });
    log.info("agent ready");
    let reloading = Promise.resolve();
    process.on("SIGHUP", () => {
      reloading = reloading.then(async () => {
        try {
          await agent?.reload();
        } catch (e) {
          // Never crash on a reload: the last good state stays enforced.
          log.error({ err: e }, "reload failed, keeping the last good state");
        }
      });
    });
    await untilSignalled();
    await reloading;
    await agent.close();
  } finally {
    await server?.close();
  }
  return 0;
}

interface CommonOptions {
  node: string;
  log: Logger;
  listen: ListenAddress | undefined;
  readyFile: string | undefined;
}

// /metrics, /healthz and /readyz (none with --metrics-addr 0). The agent's own liveness check is
// looked up at each probe: the static agent exists only once its files are enforced.
async function startObserveServer(
  o: CommonOptions,
  metrics: AgentMetrics | undefined,
  ready: HealthCheck,
  agentLive: () => HealthCheck | undefined,
): Promise<ObserveServer | undefined> {
  if (!o.listen || !metrics) return undefined;
  const eventLoop = new EventLoopCheck();
  const reconciler: HealthCheck = { name: "reconciler", check: () => agentLive()?.check() };
  const server = await ObserveServer.start({
    listen: o.listen,
    registry: metrics.registry,
    live: [eventLoop, reconciler],
    ready: [ready],
  });
  o.log.info({ address: formatListenAddress(server.address) }, "serving /metrics, /healthz and /readyz");
  return server;
}

// The monitor is observability, not enforcement: an address it cannot bind (another agent's default
// port on a shared test host) is logged, and the agent runs on without it.
async function startMonitor(
  o: KubeAgentCliOptions,
  listen: MonitorListen,
  datapath: Datapath,
  source: AgentMonitorOptions["source"],
  ruleCounters: AgentMonitorOptions["ruleCounters"],
): Promise<AgentMonitor | undefined> {
  const { AgentMonitor } = await import("../monitor/agent-monitor.ts");
  try {
    const m = await AgentMonitor.start({
      node: o.node,
      datapath,
      sampling: o.sampling,
      listen,
      source,
      ruleCounters,
      capacity: o.monitorBuffer,
      logger: o.log,
    });
    o.log.info({ address: formatMonitorAddress(m.address) }, "serving flows for sluice monitor on /v1/flows");
    return m;
  } catch (e) {
    o.log.error(
      { err: e, address: formatMonitorAddress(listen) },
      "monitor not served; enforcing without it",
    );
    return undefined;
  }
}

// Signal listeners do not keep Node's event loop alive: a static agent without a metrics server or a
// monitor had nothing else pending and exited 0 right after "agent ready". A timer holds the loop until
// the signal comes.
function untilSignalled(): Promise<void> {
  return new Promise<void>((resolve) => {
    const hold = setInterval(() => {}, 2 ** 30);
    const done = () => {
      clearInterval(hold);
      process.off("SIGTERM", done);
      process.off("SIGINT", done);
      resolve();
    };
    process.once("SIGTERM", done);
    process.once("SIGINT", done);
  });
}

interface KubeAgentCliOptions extends CommonOptions {
  pinRoot: string;
  kubeconfig: string | undefined;
  context: string | undefined;
  objectPath: string | undefined;
  sampling: EventSampling;
  attachMode: AttachMode | "auto";
  allowLocalhost: AllowLocalhost;
  hostRouting: HostRouting;
  mapSizes: MapSizes;
  endpointPolicyEntries: number;
  cniSocket: string | undefined;
  monitor: MonitorListen | undefined;
  monitorBuffer: number;
}

async function kubeAgent(o: KubeAgentCliOptions): Promise<number> {
  const datapath = loadDatapath({
    pinRoot: o.pinRoot,
    objectPath: o.objectPath,
    attachMode: o.attachMode,
    mapSizes: o.mapSizes,
  });
  if (datapath.keptSizes.length > 0) o.log.warn(describeKeptSizes(datapath.keptSizes));
  writeEventSampling(datapath, o.sampling);
  const metrics = o.listen ? new AgentMetrics(newRegistry()) : undefined;
  let server: ObserveServer | undefined;
  let monitor: AgentMonitor | undefined;
  try {
    const { KubeAgent } = await import("../agent/kube-agent.ts");
    const agent = new KubeAgent({
      kubeconfig: o.kubeconfig,
      context: o.context,
      node: o.node,
      datapath,
      resolver: new RouteInterfaceResolver(),
      logger: o.log,
      metrics,
      allowLocalhost: o.allowLocalhost,
      hostRouting: o.hostRouting,
      endpointPolicyEntries: o.endpointPolicyEntries,
      cniSocket: o.cniSocket,
    });
    // Listening before the caches sync: /readyz says why it is not ready yet.
    server = await startObserveServer(o, metrics, agent.health.ready, () => agent.health.live);
    monitor =
      o.monitor &&
      (await startMonitor(
        o,
        o.monitor,
        datapath,
        () => agent.compiled,
        () => agent.ruleCounters(),
      ));
    await agent.start();
    if (o.readyFile)
      writeFileSync(
        o.readyFile,
        JSON.stringify({
          node: o.node,
          ...(server ? { metrics: formatListenAddress(server.address) } : {}),
          ...(monitor ? { monitor: formatMonitorAddress(monitor.address) } : {}),
        }),
      );
    // "agent ready on node" is what the cluster's upgrade test waits for.
    o.log.info(`agent ready on node ${o.node}`);
    await untilSignalled();
    await agent.stop();
  } finally {
    await monitor?.close();
    await server?.close();
    datapath.close();
  }
  return 0;
}
