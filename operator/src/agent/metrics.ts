// Every metric the node agent exports (prom-client, served at --metrics-addr). Names carry the
// sluice_ prefix and their unit; labels are low-cardinality (pass kind, phase, map, resource,
// direction/verdict/reason), never a pod or a policy. Values the agent already holds (queue depth,
// map usage, the datapath's verdict counters) are read by collect() at scrape time, so the
// reconcile and packet paths pay nothing for them; the rest are observed once per pass.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { FailedClosedCounts } from "./capacity-report.ts";
import type { PassReport } from "./pass-report.ts";

// The datapath's node-wide verdict counters, as the datapath's reader returns them (cumulative).
export interface VerdictRow {
  direction: "ingress" | "egress";
  verdict: "allowed" | "denied";
  reason: string;
  packets: number;
  bytes: number;
}

// One BPF map's fill.
export interface MapUsage {
  map: string;
  entries: number;
  capacity: number;
}

// The policy maps' budget as the writer checks it: every endpoint's two generations, and capacity.
export interface PolicyBudget {
  entries: number;
  capacity: number;
}

// What collect() reads at scrape time; each is optional (a source not wired yet exports nothing).
export interface AgentMetricSources {
  queueDepth?: () => number;
  mapUsage?: () => readonly MapUsage[];
  policyBudget?: () => PolicyBudget;
  verdicts?: () => readonly VerdictRow[];
}

export type ReplacementKind = "program_swap" | "layout_migration" | "map_resize";

// From half a millisecond (an incremental pass on a quiet node) up to a minute (a wedged one).
const DELAY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];
const KEY_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000];

export class AgentMetrics {
  readonly #implementationDelay: Histogram;
  readonly #passDuration: Histogram<"pass">;
  readonly #phaseDuration: Histogram<"phase">;
  readonly #passKeys: Histogram;
  readonly #passErrors: Counter;
  readonly #retries: Counter;
  readonly #endpoints: Gauge;
  readonly #replacements: Counter<"kind">;
  readonly #replacementDuration: Histogram<"kind">;
  readonly #watchErrors: Counter<"resource">;
  readonly #failedClosed: Gauge<"limit">;
  readonly #hostRouting: Gauge;
  #sources: AgentMetricSources = {};
  readonly registry: Registry;

  constructor(registry: Registry) {
    this.registry = registry;
    const registers = [registry];
    const sources = () => this.#sources;
    this.#implementationDelay = new Histogram({
      name: "sluice_agent_policy_implementation_delay_seconds",
      help: "From the agent's watch delivering a policy generation (or deletion) to that generation written to the BPF maps",
      buckets: DELAY_BUCKETS,
      registers,
    });
    this.#passDuration = new Histogram({
      name: "sluice_agent_reconcile_duration_seconds",
      help: "Duration of a reconcile pass (full: rebuilt from the caches; incremental: the queued keys)",
      labelNames: ["pass"],
      buckets: DELAY_BUCKETS,
      registers,
    });
    this.#phaseDuration = new Histogram({
      name: "sluice_agent_reconcile_phase_duration_seconds",
      help: "Time a reconcile pass spends per phase: queued (oldest event to the pass), compile, resolve (interfaces), sync (map writes and attachment)",
      labelNames: ["phase"],
      buckets: DELAY_BUCKETS,
      registers,
    });
    this.#passKeys = new Histogram({
      name: "sluice_agent_reconcile_keys",
      help: "Work-queue keys reconciled per pass",
      buckets: KEY_BUCKETS,
      registers,
    });
    this.#passErrors = new Counter({
      name: "sluice_agent_reconcile_errors_total",
      help: "Reconcile passes that failed (their keys are retried with backoff; the maps keep the last good state)",
      registers,
    });
    this.#retries = new Counter({
      name: "sluice_agent_workqueue_retries_total",
      help: "Keys requeued with backoff after a failed pass",
      registers,
    });
    new Gauge({
      name: "sluice_agent_workqueue_depth",
      help: "Keys waiting in the agent's work queue",
      registers,
      collect() {
        const depth = sources().queueDepth;
        if (depth) this.set(depth());
      },
    });
    this.#hostRouting = new Gauge({
      name: "sluice_agent_host_routing",
      help: "1 while the datapath routes between this node's pods itself (host routing in BPF), 0 while the host forwards them",
      registers,
    });
    this.#endpoints = new Gauge({
      name: "sluice_agent_endpoints_enforced",
      help: "Local endpoints whose policy is in the maps and whose interface carries the programs",
      registers,
    });
    const mapGauge = (name: string, help: string, value: (u: MapUsage) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["map"],
        registers,
        collect() {
          const usage = sources().mapUsage;
          if (!usage) return;
          this.reset();
          for (const u of usage()) this.set({ map: u.map }, value(u));
        },
      });
    mapGauge("sluice_datapath_map_entries", "Entries in each BPF map the agent writes", (u) => u.entries);
    mapGauge(
      "sluice_datapath_map_capacity_entries",
      "Capacity (max entries) of each BPF map the agent writes",
      (u) => u.capacity,
    );
    mapGauge(
      "sluice_datapath_map_fill_ratio",
      "Entries over capacity of each BPF map the agent writes (0 to 1): map pressure before a limit is hit",
      (u) => (u.capacity > 0 ? u.entries / u.capacity : 0),
    );
    new Gauge({
      name: "sluice_datapath_policy_fill_ratio",
      help: "Policy entries of every local endpoint's two generations over the policy maps' capacity, the figure the writer checks: at 1, endpoints whose policy does not fit fail closed",
      registers,
      collect() {
        const budget = sources().policyBudget;
        if (!budget) return;
        const b = budget();
        this.set(b.capacity > 0 ? b.entries / b.capacity : 0);
      },
    });
    this.#failedClosed = new Gauge({
      name: "sluice_agent_endpoints_failed_closed",
      help: "Local endpoints that fail closed because they do not fit: limit endpoint (policy over --endpoint-policy-entries), policy_map (the node's policy map is full) or endpoint_map (no place in the node's endpoint map: no program, and sluice-cni keeps the pod from starting)",
      labelNames: ["limit"],
      registers,
    });
    this.#failedClosed.set({ limit: "endpoint" }, 0);
    this.#failedClosed.set({ limit: "policy_map" }, 0);
    this.#failedClosed.set({ limit: "endpoint_map" }, 0);
    this.#replacements = new Counter({
      name: "sluice_agent_live_replacements_total",
      help: "Live replacements of the datapath: program_swap counts attachments whose program was swapped in place, layout_migration the map layout upgrades, map_resize the pinned maps grown to configured sizes",
      labelNames: ["kind"],
      registers,
    });
    this.#replacementDuration = new Histogram({
      name: "sluice_agent_live_replacement_duration_seconds",
      help: "Duration of a live replacement: all program swaps of one pass, or one layout migration",
      labelNames: ["kind"],
      buckets: DELAY_BUCKETS,
      registers,
    });
    this.#watchErrors = new Counter({
      name: "sluice_agent_api_watch_restarts_total",
      help: "API list/watch failures per resource (each one restarts the watch with backoff; the maps keep the last good state)",
      labelNames: ["resource"],
      registers,
    });
    // The datapath's counters are cumulative in the kernel: each scrape copies them.
    const verdictCounter = (name: string, help: string, field: "packets" | "bytes") =>
      new Counter({
        name,
        help,
        labelNames: ["direction", "verdict", "reason"],
        registers,
        collect() {
          const verdicts = sources().verdicts;
          if (!verdicts) return;
          this.reset();
          for (const r of verdicts())
            this.inc({ direction: r.direction, verdict: r.verdict, reason: r.reason }, r[field]);
        },
      });
    verdictCounter(
      "sluice_datapath_packets_total",
      "Packets the datapath gave a verdict, by hook direction, verdict and reason (node-wide)",
      "packets",
    );
    verdictCounter(
      "sluice_datapath_bytes_total",
      "Bytes of the packets the datapath gave a verdict (node-wide)",
      "bytes",
    );
  }

  // Where collect() reads from; set once the agent holds them.
  setSources(s: AgentMetricSources): void {
    this.#sources = { ...this.#sources, ...s };
  }

  pass(p: PassReport): void {
    this.#passDuration.observe({ pass: p.full ? "full" : "incremental" }, p.totalMs / 1000);
    this.#phaseDuration.observe({ phase: "queued" }, p.queuedMs / 1000);
    this.#phaseDuration.observe({ phase: "compile" }, p.compileMs / 1000);
    this.#phaseDuration.observe({ phase: "resolve" }, p.resolveMs / 1000);
    this.#phaseDuration.observe({ phase: "sync" }, p.syncMs / 1000);
    this.#passKeys.observe(p.keys);
    this.#endpoints.set(p.endpoints);
  }

  // A static agent's reload: one full pass whose phases are not timed apart.
  staticReload(totalMs: number, endpoints: number): void {
    this.#passDuration.observe({ pass: "full" }, totalMs / 1000);
    this.#endpoints.set(endpoints);
  }

  passFailed(keys: number): void {
    this.#passErrors.inc();
    this.#retries.inc(keys);
  }

  policiesImplemented(delaysSeconds: readonly number[]): void {
    for (const s of delaysSeconds) this.#implementationDelay.observe(s);
  }

  liveReplacement(kind: ReplacementKind, count: number, seconds: number): void {
    this.#replacements.inc({ kind }, count);
    this.#replacementDuration.observe({ kind }, seconds);
  }

  hostRouting(on: boolean): void {
    this.#hostRouting.set(on ? 1 : 0);
  }

  // After each write: endpoints failing closed, by the limit they hit.
  failedClosed(c: FailedClosedCounts): void {
    this.#failedClosed.set({ limit: "endpoint" }, c.endpointLimit);
    this.#failedClosed.set({ limit: "policy_map" }, c.policyMap);
    this.#failedClosed.set({ limit: "endpoint_map" }, c.endpointMap);
  }

  watchRestart(resource: string): void {
    this.#watchErrors.inc({ resource });
  }
}
