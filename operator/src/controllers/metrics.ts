// The operator's Prometheus metrics, all defined here so names, units and label sets are reviewed
// in one place. Every label takes values from a fixed set chosen in code (controller names, API
// resources and verbs, results), never from object names: cardinality stays constant whatever the
// cluster holds. Values that already live in a cache (current identities, leadership, queue depth)
// are read at scrape time through providers instead of being mirrored on every event.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** The API operations the operator performs, for sluice_operator_api_errors_total. */
export type ApiVerb = "get" | "list_watch" | "create" | "update" | "patch" | "delete" | "apply";

export type StatusWriteResult = "ok" | "gone" | "error";

/** What the controller frame reports (frame.ts); kept narrow so a test can fake it. */
export interface ControllerMetrics {
  reconciled(controller: string, seconds: number, ok: boolean): void;
  retried(controller: string): void;
  /** The frame's queue while it runs; undefined when it stops (the gauge then reads 0). */
  queueDepth(controller: string, depth: (() => number) | undefined): void;
}

export interface OperatorSources {
  isLeader: () => boolean;
  /** Live (not tombstoned) SecurityIdentities in this replica's cache. */
  liveIdentities: () => number;
}

// Pod seen → identity created is one API round trip when healthy and up to a few backoff rounds
// under conflicts, so the buckets span 5 ms to 30 s.
const ALLOCATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const RECONCILE_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class OperatorMetrics {
  readonly identitiesAllocated: Counter;
  readonly identityAllocationConflicts: Counter;
  readonly identitiesGc: Counter<"action">;
  readonly identities: Gauge;
  readonly allocationSeconds: Histogram;
  readonly leader: Gauge;
  readonly leaderTransitions: Counter<"to">;
  readonly statusWrites: Counter<"result">;
  readonly apiErrors: Counter<"resource" | "verb">;
  readonly queueDepthGauge: Gauge<"controller">;
  readonly queueRetries: Counter<"controller">;
  readonly reconcileSeconds: Histogram<"controller" | "result">;
  private sources: OperatorSources | undefined;
  private readonly depths = new Map<string, () => number>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.identitiesAllocated = new Counter({
      name: "sluice_operator_identities_allocated_total",
      help: "SecurityIdentities this replica created or adopted for a label set that had none.",
      registers,
    });
    this.identityAllocationConflicts = new Counter({
      name: "sluice_operator_identity_allocation_conflicts_total",
      help: "Identity numbers found taken at create time (another writer got there first).",
      registers,
    });
    this.identitiesGc = new Counter({
      name: "sluice_operator_identities_gc_total",
      help: "Unused or duplicate SecurityIdentities retired, by action (delete, tombstone).",
      labelNames: ["action"],
      registers,
    });
    const self = this;
    this.identities = new Gauge({
      name: "sluice_operator_identities",
      help: "Live (not tombstoned) SecurityIdentities in the operator's cache.",
      registers,
      collect() {
        this.set(self.sources?.liveIdentities() ?? 0);
      },
    });
    this.allocationSeconds = new Histogram({
      name: "sluice_operator_identity_allocation_duration_seconds",
      help: "From the operator seeing a pod with a label set without identity to that identity existing.",
      buckets: ALLOCATION_BUCKETS,
      registers,
    });
    this.leader = new Gauge({
      name: "sluice_operator_leader",
      help: "1 while this replica holds the leader lease, else 0.",
      registers,
      collect() {
        this.set(self.sources?.isLeader() ? 1 : 0);
      },
    });
    this.leaderTransitions = new Counter({
      name: "sluice_operator_leader_transitions_total",
      help: "Times this replica started (to=leader) or stopped (to=standby) leading.",
      labelNames: ["to"],
      registers,
    });
    this.statusWrites = new Counter({
      name: "sluice_operator_policy_status_writes_total",
      help: "Policy status writes, by result (ok, gone: deleted meanwhile, error).",
      labelNames: ["result"],
      registers,
    });
    this.apiErrors = new Counter({
      name: "sluice_operator_api_errors_total",
      help: "Failed API server requests, by resource and verb (list_watch: informer list or watch).",
      labelNames: ["resource", "verb"],
      registers,
    });
    this.queueDepthGauge = new Gauge({
      name: "sluice_operator_workqueue_depth",
      help: "Keys waiting in a controller's work queue.",
      labelNames: ["controller"],
      registers,
      collect() {
        for (const [controller, depth] of self.depths) this.set({ controller }, depth());
      },
    });
    this.queueRetries = new Counter({
      name: "sluice_operator_workqueue_retries_total",
      help: "Keys requeued with backoff after a failed reconcile.",
      labelNames: ["controller"],
      registers,
    });
    this.reconcileSeconds = new Histogram({
      name: "sluice_operator_reconcile_duration_seconds",
      help: "Time per reconcile of one key, by controller and result (ok, error).",
      labelNames: ["controller", "result"],
      buckets: RECONCILE_BUCKETS,
      registers,
    });
    // Leadership starts at 0, not absent: a dashboard can tell "standby" from "not scraped".
    this.leaderTransitions.inc({ to: "leader" }, 0);
    this.leaderTransitions.inc({ to: "standby" }, 0);
    for (const result of ["ok", "gone", "error"] as const) this.statusWrites.inc({ result }, 0);
  }

  /** Where the scrape-time gauges read from (the Operator, once it exists). */
  bind(sources: OperatorSources): void {
    this.sources = sources;
  }

  apiError(resource: string, verb: ApiVerb): void {
    this.apiErrors.inc({ resource, verb });
  }

  statusWrite(result: StatusWriteResult): void {
    this.statusWrites.inc({ result });
  }

  /** The frame's hooks, bound to these metrics. */
  readonly controllers: ControllerMetrics = {
    reconciled: (controller, seconds, ok) =>
      this.reconcileSeconds.observe({ controller, result: ok ? "ok" : "error" }, seconds),
    retried: (controller) => this.queueRetries.inc({ controller }),
    queueDepth: (controller, depth) => {
      this.depths.set(controller, depth ?? (() => 0));
      this.queueRetries.inc({ controller }, 0);
    },
  };
}
