// The agent's side of `sluice monitor`: reads the datapath's flow events from the ring buffer, names
// each with the agent's view as of its last pass (view.ts, name.ts), keeps the recent ones in a
// bounded buffer and serves them (server.ts). What is lost is counted where it is lost: events the
// datapath sampled away or rate-limited (its verdict counters against the events received), flows a
// slow reader skipped (per stream), flows the buffer overwrote.
import type { FlowEvent } from "../datapath/flow-events.ts";
import { openFlowEvents, type RecordStream } from "../datapath/flow-events.ts";
import type { Datapath } from "../datapath/kernel/programs.ts";
import { readVerdictCounters } from "../datapath/kernel/verdicts.ts";
import type { Logger } from "../observe/log.ts";
import type { EventSampling } from "../agent/datapath-config.ts";
import { nodeRules, RuleActivity, type RuleCounterRow, type RulesRecord } from "../stats/rule-stats.ts";
import { FlowBuffer } from "./buffer.ts";
import type { FlowCounts, StatsRecord } from "./flow-record.ts";
import { nameFlow } from "./name.ts";
import { DEFAULT_MONITOR_BUFFER, type MonitorListen, MonitorServer } from "./server.ts";
import { type MonitorSource, MonitorView } from "./view.ts";

export interface AgentMonitorOptions {
  node: string;
  datapath: Pick<Datapath, "addon" | "maps">;
  sampling: EventSampling;
  listen: MonitorListen;
  // The compiler as of the agent's last pass and the pass count; undefined before the first pass.
  source: () => { compiler: MonitorSource; passes: number } | undefined;
  capacity?: number;
  // The datapath's per-rule counter slots, named by endpoint (the map writer's slot table); absent: no
  // GET /v1/rules.
  ruleCounters?: () => { rows: readonly RuleCounterRow[]; uncounted: number };
  logger: Logger;
}

export class AgentMonitor {
  readonly #o: AgentMonitorOptions;
  readonly buffer: FlowBuffer;
  readonly #received: FlowCounts = { allowed: 0, denied: 0 };
  #undecodable = 0;
  readonly #judgedAtStart: FlowCounts;
  #stream?: RecordStream<FlowEvent>;
  #server?: MonitorServer;
  #view?: { view: MonitorView; compiler: MonitorSource; passes: number };
  readonly #activity = new RuleActivity();

  private constructor(o: AgentMonitorOptions) {
    this.#o = o;
    this.buffer = new FlowBuffer(o.capacity ?? DEFAULT_MONITOR_BUFFER);
    this.#judgedAtStart = this.#judged() ?? { allowed: 0, denied: 0 };
  }

  static async start(o: AgentMonitorOptions): Promise<AgentMonitor> {
    const m = new AgentMonitor(o);
    m.#server = await MonitorServer.start({
      listen: o.listen,
      buffer: m.buffer,
      stats: () => m.stats(),
      labels: (id) => m.#currentView()?.labels(id),
      ...(o.ruleCounters ? { rules: () => m.rules() } : {}),
    });
    const stream = openFlowEvents(o.datapath.addon, o.datapath.maps.eventsFd);
    stream.on("events", (batch) => m.ingest(batch));
    stream.on("error", () => m.#undecodable++);
    // The agent's exit is its signal handler's: an open ring buffer never holds it.
    stream.unref();
    m.#stream = stream;
    return m;
  }

  get address(): MonitorListen {
    return this.#server!.address;
  }

  // A batch from the ring buffer: the datapath's clock (CLOCK_MONOTONIC, bpf_ktime_get_ns) to wall time
  // with one offset per batch.
  ingest(batch: readonly FlowEvent[]): void {
    const offsetNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
    const view = this.#currentView();
    for (const ev of batch) {
      try {
        const r = nameFlow(view, this.#o.node, ev, Number((ev.tsNs + offsetNs) / 1_000_000n));
        this.#received[r.enforced ?? (r.verdict === "denied" ? "denied" : "allowed")]++;
        this.buffer.push(r);
      } catch (e) {
        // Never let one odd event stop the stream; counted in the stats.
        if (this.#undecodable++ === 0)
          this.#o.logger.warn({ err: e }, "monitor: a flow event could not be named");
      }
    }
  }

  stats(): Omit<StatsRecord, "type" | "time" | "readerDropped"> {
    const judged = this.#judged();
    const s = this.#o.sampling;
    return {
      node: this.#o.node,
      sampling: { allow: s.sampleAllow, deny: s.sampleDeny, perSecond: s.perSecond },
      received: { ...this.#received },
      ...(judged
        ? {
            judged: {
              allowed: judged.allowed - this.#judgedAtStart.allowed,
              denied: judged.denied - this.#judgedAtStart.denied,
            },
          }
        : {}),
      undecodable: this.#undecodable,
      buffered: this.buffer.size,
      capacity: this.buffer.capacity,
      overwritten: this.buffer.overwritten,
    };
  }

  // The node's per-rule counters, named with the view of the agent's last pass.
  rules(): RulesRecord {
    const counters = this.#o.ruleCounters?.() ?? { rows: [], uncounted: 0 };
    const view = this.#currentView();
    return nodeRules({
      node: this.#o.node,
      nowIso: new Date().toISOString(),
      rows: counters.rows,
      rules: view?.rules() ?? new Map(),
      uncounted: counters.uncounted,
      activity: this.#activity,
      ...(view
        ? { isolatedBy: (ep, dir, audit) => view.isolatedBy(ep, dir, audit), inAudit: (p) => view.inAudit(p) }
        : {}),
    });
  }

  // Packets judged by the datapath, node-wide; undefined when the pins predate the verdict counters.
  #judged(): FlowCounts | undefined {
    const rows = readVerdictCounters(this.#o.datapath);
    if (rows.length === 0) return undefined;
    const out: FlowCounts = { allowed: 0, denied: 0 };
    for (const r of rows) out[r.verdict] += r.packets;
    return out;
  }

  // The view of the agent's last pass, built again once per pass that events arrive after.
  #currentView(): MonitorView | undefined {
    const s = this.#o.source();
    if (!s) return undefined;
    const v = this.#view;
    if (v && v.compiler === s.compiler && v.passes === s.passes) return v.view;
    const view = new MonitorView(s.compiler, this.#o.node);
    this.#view = { view, compiler: s.compiler, passes: s.passes };
    return view;
  }

  async close(): Promise<void> {
    this.#stream?.stop();
    await this.#server?.close();
  }
}
