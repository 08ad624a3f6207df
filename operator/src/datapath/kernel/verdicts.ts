// The node-wide verdict counters (sl_vcnt, bpf/include/sluice_shared.h enum sl_verdict_counters): packets
// and bytes by direction, verdict and reason, summed over CPUs, for the agent's metrics. One batch read
// of a small array (SL_VERDICT_COUNTERS slots), cheap enough for every scrape.
import { enums } from "../codec/layout.generated.ts";
import type { Datapath } from "./programs.ts";

export interface VerdictCounter {
  direction: "ingress" | "egress";
  verdict: "allowed" | "denied";
  // enum sl_reason in lower case, words joined by "-": "policy", "default", "ct-reply", "ndp", ...
  reason: string;
  packets: number;
  bytes: number;
}

const REASONS = enums.sl_verdict_counters.SL_VERDICT_REASONS;
const DIR = enums.sl_dir;

// Reason name by code. SL_REASON_NO_ENDPOINT has a slot, but a packet of an interface without an
// endpoint is never judged, so it is no row.
const reasonNames = new Map<number, string>(
  Object.entries(enums.sl_reason)
    .filter(([, code]) => code !== enums.sl_reason.SL_REASON_NO_ENDPOINT)
    .map(([name, code]) => [
      code,
      name
        .replace(/^SL_REASON_/, "")
        .toLowerCase()
        .replaceAll("_", "-"),
    ]),
);

// The slot of (direction code, denied, reason code), as sl_count in bpf/sluice.bpf.c computes it.
export function verdictCounterIndex(dir: number, denied: boolean, reason: number): number {
  return (dir * 2 + (denied ? 1 : 0)) * REASONS + reason;
}

// Every (direction, verdict, reason) row, zeros included, so that a counter exists from the start. Empty
// when the pins predate the map (a datapath opened from an older build's pins).
export function readVerdictCounters(dp: Pick<Datapath, "maps">): VerdictCounter[] {
  const map = dp.maps.verdicts;
  if (!map) return [];
  const totals = new Map<number, { packets: bigint; bytes: bigint }>();
  for (const [index, perCpu] of map.entries()) {
    let packets = 0n;
    let bytes = 0n;
    for (const v of perCpu) {
      packets += v.packets;
      bytes += v.bytes;
    }
    totals.set(index, { packets, bytes });
  }
  const out: VerdictCounter[] = [];
  for (const [direction, dir] of [
    ["ingress", DIR.SL_DIR_INGRESS],
    ["egress", DIR.SL_DIR_EGRESS],
  ] as const)
    for (const verdict of ["allowed", "denied"] as const)
      for (const [code, reason] of reasonNames) {
        const t = totals.get(verdictCounterIndex(dir, verdict === "denied", code));
        out.push({
          direction,
          verdict,
          reason,
          packets: Number(t?.packets ?? 0n),
          bytes: Number(t?.bytes ?? 0n),
        });
      }
  return out;
}
