// Keeps the datapath programs attached to exactly the endpoints' interfaces. Existing pinned links are
// adopted and their program swapped atomically (never detach+attach); links of interfaces that are no
// longer endpoints are removed.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { HookDirection } from "../datapath/bpf-addon.ts";
import { type Attachment, attachOrReplace, detach, replaceProgram } from "../datapath/links.ts";
import type { Datapath } from "../datapath/programs.ts";
import type { HostInterface } from "./host-interfaces.ts";

const HOOKS: readonly HookDirection[] = ["ingress", "egress"];

export interface PinnedLink {
  ifname: string;
  hook: HookDirection;
  pinPath: string;
}

// The tcx links pinned under the root (<root>/links/<ifname>-<hook>).
export function pinnedLinks(pinRoot: string): PinnedLink[] {
  const dir = join(pinRoot, "links");
  if (!existsSync(dir)) return [];
  const out: PinnedLink[] = [];
  for (const name of readdirSync(dir)) {
    const m = /^(.+)-(ingress|egress)$/.exec(name);
    if (m) out.push({ ifname: m[1], hook: m[2] as HookDirection, pinPath: join(dir, name) });
  }
  return out;
}

function asAttachment(l: PinnedLink): Attachment {
  return { mode: "tcx", ifname: l.ifname, ifindex: 0, hook: l.hook, pinPath: l.pinPath, adopted: true };
}

export function attachAll(dp: Datapath, pinRoot: string, interfaces: Iterable<HostInterface>): Attachment[] {
  const out: Attachment[] = [];
  for (const i of interfaces)
    for (const hook of HOOKS)
      out.push(attachOrReplace(dp.addon, { pinRoot, ifname: i.ifname, hook, progFd: dp.programFor(hook) }));
  return out;
}

// Removes links pinned for interfaces that are not endpoints any more. Returns what it removed.
export function detachStale(dp: Datapath, pinRoot: string, keep: ReadonlySet<string>): PinnedLink[] {
  const stale = pinnedLinks(pinRoot).filter((l) => !keep.has(l.ifname));
  for (const l of stale) detach(dp.addon, asAttachment(l));
  return stale;
}

// Swaps the program of every pinned link for dp's, atomically per link (bpf_link_update).
export function replaceAll(dp: Datapath, pinRoot: string): number {
  const links = pinnedLinks(pinRoot);
  for (const l of links) replaceProgram(dp.addon, asAttachment(l), dp.programFor(l.hook));
  return links.length;
}
