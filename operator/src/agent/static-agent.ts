// The agent in static mode: policies and the topology come from manifest files instead of the API
// server (the lab, air-gapped tests). SIGHUP re-reads the files; a bad file keeps the last good state.
import { writeFileSync } from "node:fs";
import { classifyObjects } from "../api/objects.ts";
import { openFlowEvents } from "../datapath/flow-events.ts";
import type { AttachMode } from "../datapath/kernel/links.ts";
import { describeKeptSizes, type MapSizes } from "../datapath/kernel/map-sizes.ts";
import { loadDatapath } from "../datapath/kernel/programs.ts";
import { readVerdictCounters } from "../datapath/kernel/verdicts.ts";
import { loadManifests } from "../manifests/load.ts";
import { type Logger, silentLogger } from "../observe/log.ts";
import { AgentHealth } from "./agent-health.ts";
import { formatMonitorAddress, type MonitorListen } from "../monitor/server.ts";
import { staticMonitorSource } from "../monitor/static-source.ts";
import type { MonitorSource } from "../monitor/view.ts";
import { type ApplyResult, Enforcer } from "./enforcer.ts";
import { type EventSampling, writeEventSampling } from "./datapath-config.ts";
import { type InterfaceResolver, RouteInterfaceResolver } from "./host-interfaces.ts";
import type { AgentMetrics } from "./metrics.ts";
import { nodeAddresses } from "./node-addresses.ts";
import { reportWriteOutcome } from "./write-outcome.ts";
import type { AllowLocalhost } from "../policy/index.ts";
import { type HostRouting, HostRoutingGate } from "./host-routing.ts";

export interface StaticAgentOptions {
  files: string[];
  node: string;
  pinRoot: string;
  objectPath?: string;
  attachMode?: AttachMode | "auto";
  readyFile?: string;
  // More fields for the ready file (the CLI's: the bound metrics address).
  readyInfo?: Record<string, unknown>;
  resolver?: InterfaceResolver;
  // Flow events to this sink (JSON lines), sampled as configured.
  onEvent?: (line: string) => void;
  // Or: flows served for `sluice monitor`, named with the last reload's compile (its address goes in
  // the ready file). Not with onEvent: the ring buffer has one reader.
  monitor?: { listen: MonitorListen; buffer: number };
  sampling: EventSampling;
  // Default: silent (a library caller that wants no output).
  logger?: Logger;
  // None: nothing is recorded.
  metrics?: AgentMetrics;
  // Whether the node reaches its own pods whatever the policies say (default "always"; see
  // CompileOptions.allowLocalhost).
  allowLocalhost?: AllowLocalhost;
  // Whether the datapath routes between the node's pods itself (host-routing.ts; default "kernel").
  hostRouting?: HostRouting;
  // The node's own addresses (identity host); default: this network namespace's, read at every reload.
  hostAddresses?: () => readonly string[];
  // The BPF map sizes (default the build's) and the most policy entries one endpoint may have.
  mapSizes?: MapSizes;
  endpointPolicyEntries?: number;
}

export class StaticAgent {
  readonly #o: StaticAgentOptions;
  readonly #enforcer: Enforcer;
  readonly #log: Logger;
  #stopEvents?: () => void | Promise<void>;
  // The last reload's compile, for the monitor's names, and how many reloads made it.
  #compiled?: { compiler: MonitorSource; passes: number };
  // No caches here: ready once the files are enforced, not while the last reload failed.
  readonly health = new AgentHealth();

  private constructor(o: StaticAgentOptions, enforcer: Enforcer) {
    this.#o = o;
    this.#enforcer = enforcer;
    this.#log = o.logger ?? silentLogger();
    this.health.cachesSynced();
  }

  static async start(o: StaticAgentOptions): Promise<StaticAgent> {
    const dp = loadDatapath({
      pinRoot: o.pinRoot,
      objectPath: o.objectPath,
      attachMode: o.attachMode,
      mapSizes: o.mapSizes,
    });
    writeEventSampling(dp, o.sampling);
    if (dp.keptSizes.length > 0) o.logger?.warn(describeKeptSizes(dp.keptSizes));

    const agent = new StaticAgent(
      o,
      new Enforcer(dp, {
        node: o.node,
        resolver: o.resolver ?? new RouteInterfaceResolver(),
        allowLocalhost: o.allowLocalhost,
        hostRouting: new HostRoutingGate(o.hostRouting ?? "kernel"),
        hostAddresses: o.hostAddresses ?? (() => nodeAddresses()),
        capacity: o.endpointPolicyEntries,
      }),
    );
    o.metrics?.setSources({
      verdicts: () => readVerdictCounters(dp),
      mapUsage: () => agent.#enforcer.mapUsage(),
    });
    try {
      const result = await agent.reload();
      if (!result) throw new Error("the manifests could not be loaded; nothing was written");
      if (o.onEvent) {
        const sink = o.onEvent;
        const stream = openFlowEvents(dp.addon, dp.maps.eventsFd);
        stream.on("events", (batch) => {
          for (const e of batch)
            sink(JSON.stringify(e, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
        });
        agent.#stopEvents = () => stream.stop();
      }
      let monitor: string | undefined;
      if (o.monitor) {
        // Observability, not enforcement: as in Kubernetes mode, an address it cannot bind is logged.
        const { AgentMonitor } = await import("../monitor/agent-monitor.ts");
        try {
          const m = await AgentMonitor.start({
            node: o.node,
            datapath: dp,
            sampling: o.sampling,
            listen: o.monitor.listen,
            source: () => agent.#compiled,
            ruleCounters: () => agent.#enforcer.ruleCounters(),
            capacity: o.monitor.buffer,
            logger: agent.#log,
          });
          agent.#stopEvents = () => m.close();
          monitor = formatMonitorAddress(m.address);
          agent.#log.info({ address: monitor }, "serving flows for sluice monitor on /v1/flows");
        } catch (e) {
          agent.#log.error(
            { err: e, address: formatMonitorAddress(o.monitor.listen) },
            "monitor not served; enforcing without it",
          );
        }
      }
      if (o.readyFile)
        writeFileSync(
          o.readyFile,
          JSON.stringify({
            ...o.readyInfo,
            ...(monitor ? { monitor } : {}),
            endpoints: result.endpoints,
            pending: result.pending,
          }),
        );
    } catch (e) {
      await agent.close();
      throw e;
    }
    return agent;
  }

  // Re-reads the files and applies them. Returns undefined (and keeps the enforced state) on bad input.
  async reload(): Promise<ApplyResult | undefined> {
    const t0 = performance.now();
    this.health.passStarted();
    const { documents, errors } = loadManifests(this.#o.files);
    if (errors.length > 0) {
      for (const e of errors) this.#log.error({ file: e.path, line: e.line }, e.message);
      this.#log.error({ errors: errors.length }, "manifests rejected: keeping the last good state");
      this.health.passFailed(
        `${errors.length} manifest errors, first: ${errors[0]!.path}:${errors[0]!.line}`,
      );
      return undefined;
    }
    let result: ApplyResult;
    try {
      result = await this.#enforcer.apply(classifyObjects(documents.map((d) => d.object)));
    } catch (e) {
      this.health.passFailed(e instanceof Error ? e.message : String(e));
      throw e;
    }
    this.health.passSucceeded();
    this.#compiled = {
      compiler: staticMonitorSource(result.inputs, result.parts),
      passes: (this.#compiled?.passes ?? 0) + 1,
    };
    for (const e of result.errors)
      this.#log.error(
        { policy: e.policies.join(", "), ...(e.field ? { field: e.field } : {}) },
        `policy error: ${e.message}`,
      );
    const s = result.sync;
    const totalMs = performance.now() - t0;
    this.#o.metrics?.staticReload(totalMs, result.endpoints);
    this.#log.info(
      {
        endpoints: result.endpoints,
        pending: result.pending.length,
        policy_written: s.policyWritten,
        policy_deleted: s.policyDeleted,
        flips: s.flips,
        ipcache_written: s.ipcacheWritten,
        ipcache_deleted: s.ipcacheDeleted,
        sync_ms: Math.round(s.durationMs * 100) / 100,
        total_ms: Math.round(totalMs * 100) / 100,
      },
      "enforcing",
    );
    reportWriteOutcome(result, this.#log, this.#o.metrics, result.errors);
    return result;
  }

  // Closes this process's handles. Pinned maps and links stay: the datapath keeps enforcing.
  async close(): Promise<void> {
    await this.#stopEvents?.();
    this.#enforcer.datapath.close();
  }
}
