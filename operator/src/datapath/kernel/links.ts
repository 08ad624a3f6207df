// Attaching programs to an endpoint's host-side interface. tcx links are pinned under the datapath's
// root (pins.ts) so they survive the agent; a restarted agent adopts the pin and swaps the program in
// with one atomic bpf_link_update. Never detach+attach to upgrade: the gap lets traffic through that
// policy denies. Kernels without tcx get tc clsact filters, replaced in place (the kernel swaps a
// filter's program atomically too); a tc filter lives on the device, not in bpffs, so an empty marker
// directory under the root records it for restarts, upgrades and removal.
import { existsSync, mkdirSync, rmSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { type BpfAddon, type HookDirection, hasErrnoCode } from "./bpf-addon.ts";
import type { DatapathPins } from "./pins.ts";

export type AttachMode = "tcx" | "tc";

export interface Attachment {
  mode: AttachMode;
  ifname: string;
  ifindex: number;
  hook: HookDirection;
  // tcx: the link's pin path; tc: the marker directory that records the filter.
  pinPath?: string;
  // tc: filter identity.
  handle?: number;
  priority?: number;
  // What happened: a new attachment, or an existing one whose program was replaced.
  adopted: boolean;
}

export interface AttachOptions {
  pins: DatapathPins;
  ifname: string;
  hook: HookDirection;
  progFd: number;
  // "auto" (default): tcx, falling back to tc when the kernel refuses tcx links.
  mode?: AttachMode | "auto";
}

const TC_HANDLE = 1;
const TC_PRIORITY = 1;

// Opens the pinned link, returning its fd when it still belongs to ifindex (else removes the stale pin).
function openPinnedLink(addon: BpfAddon, pin: string, ifindex: number): number | undefined {
  if (!existsSync(pin)) return undefined;
  const fd = addon.objGet(pin);
  let info: { ifindex: number };
  try {
    info = addon.linkInfo(fd);
  } catch (e) {
    addon.closeFd(fd);
    throw e;
  }
  if (info.ifindex === ifindex) return fd;
  // The device went away (ifindex 0) or the name now belongs to another device: the pin is stale.
  addon.closeFd(fd);
  unlinkSync(pin);
  return undefined;
}

// Attaches progFd to the hook, or, when something is attached there already (a pinned tcx link or our tc
// filter), atomically replaces its program. An explicit mode moves a hook attached the other way: the
// new attachment first, then the old one goes (both enforce the same maps meanwhile: no gap).
export function attachOrReplace(addon: BpfAddon, o: AttachOptions): Attachment {
  const a = attachOrReplaceOne(addon, o);
  const other = a.mode === "tcx" ? o.pins.tcMarker(o.ifname, o.hook) : o.pins.link(o.ifname, o.hook);
  if (existsSync(other))
    detach(addon, recordedAttachment(addon, { ...a, mode: a.mode === "tcx" ? "tc" : "tcx", pinPath: other }));
  return a;
}

function attachOrReplaceOne(addon: BpfAddon, o: AttachOptions): Attachment {
  const ifindex = addon.ifNameToIndex(o.ifname);
  const mode = o.mode ?? "auto";
  const pin = o.pins.link(o.ifname, o.hook);
  const base = { ifname: o.ifname, ifindex, hook: o.hook };
  const marker = o.pins.tcMarker(o.ifname, o.hook);
  // An endpoint attached with tc stays on tc: adding a tcx link beside the filter would run both.
  if (mode === "tcx" || (mode === "auto" && !existsSync(marker))) {
    const existing = openPinnedLink(addon, pin, ifindex);
    if (existing !== undefined) {
      try {
        addon.linkUpdate(existing, o.progFd);
      } finally {
        addon.closeFd(existing);
      }
      return { ...base, mode: "tcx", pinPath: pin, adopted: true };
    }
    try {
      const fd = addon.attachTcx(o.progFd, ifindex, o.hook);
      try {
        mkdirSync(dirname(pin), { recursive: true });
        addon.objPin(fd, pin);
      } catch (e) {
        // Unpinned, the link would vanish with this process anyway; detach explicitly to be clear.
        addon.linkDetach(fd);
        throw e;
      } finally {
        addon.closeFd(fd);
      }
      return { ...base, mode: "tcx", pinPath: pin, adopted: false };
    } catch (e) {
      if (mode === "tcx" || !hasErrnoCode(e, "EINVAL", "EOPNOTSUPP", "ENOTSUPP")) throw e;
    }
  }
  const existing = addon.tcQuery(ifindex, o.hook, TC_HANDLE, TC_PRIORITY);
  addon.tcAttach(o.progFd, ifindex, o.hook, { handle: TC_HANDLE, priority: TC_PRIORITY, replace: true });
  mkdirSync(marker, { recursive: true });
  return {
    ...base,
    mode: "tc",
    pinPath: marker,
    handle: TC_HANDLE,
    priority: TC_PRIORITY,
    adopted: existing !== null,
  };
}

// The attachment a marker or pin records, for an agent that did not make it (restart, upgrade, CLI).
export function recordedAttachment(
  addon: BpfAddon,
  r: { mode: AttachMode; pinPath: string; ifname: string; hook: HookDirection },
): Attachment {
  const { mode, pinPath, ifname, hook } = r;
  if (mode === "tcx") return { mode, ifname, ifindex: 0, hook, pinPath, adopted: true };
  let ifindex = 0;
  try {
    ifindex = addon.ifNameToIndex(ifname);
  } catch {
    // The device is gone, and its filters with it: ifindex 0 says so.
  }
  return { mode, ifname, ifindex, hook, pinPath, handle: TC_HANDLE, priority: TC_PRIORITY, adopted: true };
}

// Replaces the program of an existing attachment (atomic in both modes).
export function replaceProgram(
  addon: BpfAddon,
  a: Attachment,
  progFd: number,
  expectedOldProgFd?: number,
): void {
  if (a.mode === "tcx") {
    const fd = addon.objGet(a.pinPath!);
    try {
      addon.linkUpdate(fd, progFd, expectedOldProgFd);
    } finally {
      addon.closeFd(fd);
    }
    return;
  }
  if (a.ifindex === 0) throw new Error(`${a.ifname}: the device is gone; its tc filter with it`);
  addon.tcAttach(progFd, a.ifindex, a.hook, { handle: a.handle, priority: a.priority, replace: true });
}

// The program id currently attached, or undefined when nothing is.
export function attachedProgramId(addon: BpfAddon, a: Attachment): number | undefined {
  if (a.mode === "tcx") {
    if (!existsSync(a.pinPath!)) return undefined;
    const fd = addon.objGet(a.pinPath!);
    try {
      return addon.linkInfo(fd).progId;
    } finally {
      addon.closeFd(fd);
    }
  }
  if (a.ifindex === 0) return undefined;
  return addon.tcQuery(a.ifindex, a.hook, a.handle!, a.priority!)?.progId;
}

// Removes the attachment: for an endpoint that is gone, never as a step of an upgrade.
export function detach(addon: BpfAddon, a: Attachment): void {
  if (a.mode === "tcx") {
    if (!existsSync(a.pinPath!)) return;
    const fd = addon.objGet(a.pinPath!);
    try {
      try {
        addon.linkDetach(fd);
      } catch (e) {
        if (!hasErrnoCode(e, "ENOLINK", "ENODEV")) throw e;
      }
    } finally {
      addon.closeFd(fd);
      unlinkSync(a.pinPath!);
    }
    return;
  }
  try {
    if (a.ifindex !== 0) addon.tcDetach(a.ifindex, a.hook, a.handle!, a.priority!);
  } catch (e) {
    if (!hasErrnoCode(e, "ENOENT", "ENODEV", "EINVAL")) throw e;
  }
  if (a.pinPath) rmSync(a.pinPath, { recursive: true, force: true });
}
