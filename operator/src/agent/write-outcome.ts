// What a write did besides the map delta, for both agents' logs and metrics: live replacement (the
// programs of an earlier agent swapped in place, a map layout migrated) and links removed.
import { describeMigration } from "../datapath/migrate.ts";
import type { Logger } from "../observe/log.ts";
import type { EnforceResult } from "./enforcer.ts";
import type { AgentMetrics } from "./metrics.ts";

const round = (ms: number) => Math.round(ms * 100) / 100;

export function reportWriteOutcome(
  r: Omit<EnforceResult, "errors">,
  log: Logger,
  metrics: AgentMetrics | undefined,
): void {
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
  if (r.detached.length > 0)
    log.info({ links: r.detached }, "links of interfaces that are no endpoints removed");
}
