// Keeps the datapath programs attached to exactly the endpoints' interfaces. Existing pinned links are
// adopted and their program swapped atomically (never detach+attach); links of interfaces that are no
// longer endpoints are removed.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { HookDirection } from "../datapath/kernel/bpf-addon.ts";
import {
  type AttachMode,
  type Attachment,
  attachOrReplace,
  detach,
  recordedAttachment,
  replaceProgram,
} from "../datapath/kernel/links.ts";
import type { Datapath } from "../datapath/kernel/programs.ts";
import type { HostInterface } from "./host-interfaces.ts";

const HOOKS: readonly HookDirection[] = ["ingress", "egress"];

export interface PinnedLink {
  ifname: string;
  hook: HookDirection;
  mode: AttachMode;
  // tcx: the link pin; tc: the marker directory of the filter.
  pinPath: string;
}

// The attachments recorded under the root: tcx links (<root>/links/<ifname>-<hook>) and tc filters
// (<root>/tc/<ifname>-<hook>).
export function pinnedLinks(pinRoot: string): PinnedLink[] {
  const out: PinnedLink[] = [];
  for (const [mode, sub] of [
    ["tcx", "links"],
    ["tc", "tc"],
  ] as const) {
    const dir = join(pinRoot, sub);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const m = /^(.+)-(ingress|egress)$/.exec(name);
      if (m) out.push({ ifname: m[1], hook: m[2] as HookDirection, mode, pinPath: join(dir, name) });
    }
  }
  return out;
}

export function attachAll(dp: Datapath, pinRoot: string, interfaces: Iterable<HostInterface>): Attachment[] {
  const out: Attachment[] = [];
  for (const i of interfaces)
    for (const hook of HOOKS)
      out.push(
        attachOrReplace(dp.addon, {
          pinRoot,
          ifname: i.ifname,
          hook,
          progFd: dp.programFor(hook),
          mode: dp.attachMode,
        }),
      );
  return out;
}

// Removes links pinned for interfaces that are not endpoints any more. Returns what it removed.
export function detachStale(
  dp: Pick<Datapath, "addon">,
  pinRoot: string,
  keep: ReadonlySet<string>,
): PinnedLink[] {
  const stale = pinnedLinks(pinRoot).filter((l) => !keep.has(l.ifname));
  for (const l of stale) detach(dp.addon, recordedAttachment(dp.addon, l));
  return stale;
}

// Swaps the program of every recorded attachment for dp's, atomically per attachment (bpf_link_update,
// or an in-place tc filter replace). Returns how many it replaced (tc filters of devices gone are not).
export function replaceAll(dp: Datapath, pinRoot: string): number {
  let n = 0;
  for (const l of pinnedLinks(pinRoot)) {
    const a = recordedAttachment(dp.addon, l);
    if (a.mode === "tc" && a.ifindex === 0) continue;
    replaceProgram(dp.addon, a, dp.programFor(l.hook));
    n++;
  }
  return n;
}

// Removes every recorded attachment (the datapath's removal): unpinning a tcx link detaches it, but a
// tc filter stays on its device until it is deleted.
export function detachAll(dp: Pick<Datapath, "addon">, pinRoot: string): number {
  return detachStale(dp, pinRoot, new Set()).length;
}
