// Keeps a datapath's programs attached to exactly the endpoints' interfaces, through the attachments its
// pin root records. Existing pinned links are adopted and their program swapped atomically (never
// detach+attach); links of interfaces that are no longer endpoints are removed.
import { rmSync } from "node:fs";
import type { HookDirection } from "./bpf-addon.ts";
import { type Attachment, attachOrReplace, detach, recordedAttachment, replaceProgram } from "./links.ts";
import type { PinnedLink } from "./pins.ts";
import type { Datapath, PinnedDatapath } from "./programs.ts";

const HOOKS: readonly HookDirection[] = ["ingress", "egress"];

// Attaches dp's programs to both hooks of each interface (or swaps them in where attached already).
export function attachAll(
  dp: Datapath,
  interfaces: Iterable<{ ifname: string; ifindex: number }>,
): Attachment[] {
  const out: Attachment[] = [];
  for (const i of interfaces)
    for (const hook of HOOKS)
      out.push(
        attachOrReplace(dp.addon, {
          pins: dp.pins,
          ifname: i.ifname,
          hook,
          progFd: dp.programFor(hook),
          mode: dp.attachMode,
        }),
      );
  return out;
}

// Removes links pinned for interfaces that are not endpoints any more. Returns what it removed.
export function detachStale(dp: PinnedDatapath, keep: ReadonlySet<string>): PinnedLink[] {
  const stale = dp.pins.links().filter((l) => !keep.has(l.ifname));
  for (const l of stale) detach(dp.addon, recordedAttachment(dp.addon, l));
  return stale;
}

// Swaps the program of every recorded attachment for dp's, atomically per attachment (bpf_link_update,
// or an in-place tc filter replace). Returns how many it replaced (tc filters of devices gone are not).
export function replaceAll(dp: Datapath): number {
  let n = 0;
  for (const l of dp.pins.links()) {
    const a = recordedAttachment(dp.addon, l);
    if (a.mode === "tc" && a.ifindex === 0) continue;
    replaceProgram(dp.addon, a, dp.programFor(l.hook));
    n++;
  }
  return n;
}

// Removes every recorded attachment: unpinning a tcx link detaches it, but a tc filter stays on its
// device until it is deleted.
export function detachAll(dp: PinnedDatapath): number {
  return detachStale(dp, new Set()).length;
}

// Removes the datapath: its attachments first (tc filters live on their devices), then every pin, so the
// maps go with their last user.
export function removeDatapath(dp: PinnedDatapath): void {
  if (dp.pins.exists()) detachAll(dp);
  rmSync(dp.pins.root, { recursive: true, force: true });
}
