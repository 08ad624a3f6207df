// The one owner of a datapath's bpffs root: every path under it is derived here. A datapath pins its
// maps by name (<root>/<map>), its tcx links (<root>/links/<ifname>-<hook>) and, for tc filters, which
// live on their device and not in bpffs, an empty marker directory (<root>/tc/<ifname>-<hook>); an
// upgrade finds the maps of older layouts beside its own, and maps being grown wait in
// <root>/resize/<map> (datapath/resize.ts). Code outside datapath/ passes the root once
// (loadDatapath, or new DatapathPins for inspection) and never joins a path under it.
import { existsSync, readdirSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";
import { enums } from "../codec/layout.generated.ts";
import type { HookDirection } from "./bpf-addon.ts";
import { DEFAULT_BPFFS, ensureBpffs } from "./bpffs.ts";
import type { AttachMode } from "./links.ts";

// One attachment recorded under the root.
export interface PinnedLink {
  ifname: string;
  hook: HookDirection;
  mode: AttachMode;
  // tcx: the link pin; tc: the marker directory of the filter.
  pinPath: string;
}

const LINKS = "links";
const TC_MARKERS = "tc";
// Maps being grown (datapath/resize.ts) are pinned here until they take their final name.
const RESIZE = "resize";
const CURRENT = enums.sl_layout.SL_LAYOUT_VERSION;

export class DatapathPins {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  // Mounts bpffs when the root lies on the default mount and it is not there yet (Debian does not mount
  // it at boot); a root elsewhere is the caller's own bpffs instance.
  prepare(): void {
    const rel = relative(DEFAULT_BPFFS, resolve(this.root));
    if (!rel.startsWith("..") && !isAbsolute(rel)) ensureBpffs(DEFAULT_BPFFS);
  }

  exists(): boolean {
    return existsSync(this.root);
  }

  // Names directly under the root (maps and the link folders), or none when the root is not there.
  names(): string[] {
    try {
      return readdirSync(this.root);
    } catch {
      return [];
    }
  }

  map(name: string): string {
    return join(this.root, name);
  }

  // Where a map being grown is pinned until it replaces the map of its name, and their folder.
  resizeStaging(name: string): string {
    return join(this.root, RESIZE, name);
  }

  resizeDir(): string {
    return join(this.root, RESIZE);
  }

  link(ifname: string, hook: HookDirection): string {
    return join(this.root, LINKS, `${ifname}-${hook}`);
  }

  tcMarker(ifname: string, hook: HookDirection): string {
    return join(this.root, TC_MARKERS, `${ifname}-${hook}`);
  }

  // The attachments recorded under the root: tcx links and tc filters' markers.
  links(): PinnedLink[] {
    const out: PinnedLink[] = [];
    for (const [mode, sub] of [
      ["tcx", LINKS],
      ["tc", TC_MARKERS],
    ] as const) {
      const dir = join(this.root, sub);
      if (!existsSync(dir)) continue;
      for (const name of readdirSync(dir)) {
        const m = /^(.+)-(ingress|egress)$/.exec(name);
        if (m) out.push({ ifname: m[1], hook: m[2] as HookDirection, mode, pinPath: join(dir, name) });
      }
    }
    return out;
  }

  // Map pins of older layout versions (names end in _v<N>, N below this layout's): an upgrade's to carry
  // over and remove.
  olderLayoutMaps(): string[] {
    return this.names().filter((n) => {
      const m = /^sl_\w+_v(\d+)$/.exec(n);
      return m !== null && Number(m[1]) < CURRENT;
    });
  }
}
