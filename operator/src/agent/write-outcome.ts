// What a write did besides the map delta, for both agents' logs and metrics: live replacement (the
// programs of an earlier agent swapped in place, a map layout migrated, maps grown), links removed, endpoints
// that fail closed because their policy does not fit, and host routing turned on or off.
import { describeFailedClosed, describeRefused } from "../datapath/writer/capacity-fit.ts";
import { describeMigration } from "../datapath/migrate.ts";
import { describeResize } from "../datapath/kernel/map-resize.ts";
import type { Logger } from "../observe/log.ts";
import type { CompileError } from "../policy/index.ts";
import { failedClosedCounts } from "./capacity-report.ts";
import type { EnforceResult } from "./enforcer.ts";
import type { AgentMetrics } from "./metrics.ts";

const round = (ms: number) => Math.round(ms * 100) / 100;
// Endpoints named in one log line at most.
const LOGGED_ENDPOINTS = 20;

export function reportWriteOutcome(
  r: Omit<EnforceResult, "errors">,
  log: Logger,
  metrics: AgentMetrics | undefined,
  compileErrors: readonly CompileError[] = [],
): void {
  const failed = r.sync.failedClosed;
  const refused = r.sync.refused;
  metrics?.failedClosed(failedClosedCounts(compileErrors, failed, refused));
  if (refused.length > 0)
    log.warn(
      {
        endpoints: refused.slice(0, LOGGED_ENDPOINTS).map((f) => f.key),
        refused: refused.length,
        wanted: refused[0].wanted,
        capacity: refused[0].capacity,
      },
      `the node's endpoint map is full: ${refused.length} endpoint(s) not enforced; first: ${describeRefused(refused[0])}`,
    );
  if (failed.length > 0)
    log.warn(
      {
        endpoints: failed.slice(0, LOGGED_ENDPOINTS).map((f) => f.key),
        failed_closed: failed.length,
        needed: failed[0].needed,
        available: failed[0].available,
        capacity: failed[0].capacity,
      },
      `the node's policy map is full: ${failed.length} endpoint(s) fail closed; first: ${describeFailedClosed(failed[0])}`,
    );
  if (r.swapped > 0) {
    metrics?.liveReplacement("program_swap", r.swapped, r.attachMs / 1000);
    log.info(
      { links: r.swapped, duration_ms: round(r.attachMs) },
      "programs swapped in place on adopted links",
    );
  }
  if (r.migrated) {
    metrics?.liveReplacement("layout_migration", 1, r.migrationMs / 1000);
    // The message is describeMigration's sentence: upgrade tests and operators grep for it.
    log.info(
      {
        from_layout: r.migrated.fromVersion,
        conntrack: r.migrated.conntrack,
        counters: r.migrated.counters,
        duration_ms: round(r.migrationMs),
      },
      describeMigration(r.migrated),
    );
  }
  if (r.migrationError) log.error(r.migrationError);
  if (r.resized) {
    metrics?.liveReplacement("map_resize", 1, r.migrationMs / 1000);
    log.info(
      {
        maps: r.resized.maps.map((m) => `${m.map}:${m.pinned}->${m.configured}`),
        conntrack: r.resized.conntrack,
      },
      describeResize(r.resized),
    );
  }
  if (r.resizeError) log.error(`${r.resizeError}; the maps keep their pinned size`);
  const routing = r.hostRouting;
  if (routing) {
    metrics?.hostRouting(routing.on);
    if (routing.on)
      log.info(
        "host routing in BPF on: packets between this node's pods go into the receiver's namespace once both ends track their flow",
      );
    else if (routing.by === "interface") log.warn(`host routing in BPF off: ${routing.reason}`);
    else log.info(`host routing in BPF off: ${routing.reason}`);
  }
  if (r.detached.length > 0)
    log.info({ links: r.detached }, "links of interfaces that are no endpoints removed");
}
