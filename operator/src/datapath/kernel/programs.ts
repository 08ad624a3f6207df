// Loading the datapath object: programs by role, typed maps, all maps pinned under one bpffs root, which
// the loaded datapath carries (pins): its links, markers and older layouts' maps are found from it.
// The maps get the configured sizes; pins of another size are grown (map-resize.ts) or kept.
import { join } from "node:path";
import { type BpfAddon, type LoadedObject, loadAddon, repoRoot } from "./bpf-addon.ts";
import type { AttachMode } from "./links.ts";
import { rmSync } from "node:fs";
import { describeResizeError, MapResize } from "./map-resize.ts";
import { type KeptMapSize, keepPinned, type MapSizes, sizesForLoad } from "./map-sizes.ts";
import { type DatapathMaps, mapsOfObject, unpinResizedMaps } from "./maps.ts";
import { DatapathPins } from "./pins.ts";

// Program names in bpf/sluice.bpf.c. Traffic from the pod enters the host side's ingress hook.
export const ProgramNames = { fromPod: "sl_from_pod", toPod: "sl_to_pod" } as const;

// What acts on a datapath's pins without its programs (inspection, removal): the addon and the root.
export interface PinnedDatapath {
  addon: BpfAddon;
  pins: DatapathPins;
}

export interface Datapath extends PinnedDatapath {
  object: LoadedObject;
  maps: DatapathMaps;
  // fd of the program for the host-side hook.
  programFor(hook: "ingress" | "egress"): number;
  programFd(name: string): number;
  // How endpoints get the programs: tcx links, tc filters, or tcx with tc where tcx is refused.
  attachMode: AttachMode | "auto";
  // Maps pinned bigger than configured: loaded at their pinned size (map-sizes.ts).
  keptSizes: KeptMapSize[];
  // Maps pinned smaller than configured, grown: copies in use by this object's programs, which take the
  // pins once the first write swapped every link (MapResize.finish). resizeError: why they were not.
  resize?: MapResize;
  resizeError?: string;
  close(): void;
}

export function defaultObjectPath(): string {
  return process.env.SLUICE_BPF_OBJECT ?? join(repoRoot(), "bpf/build/sluice.bpf.o");
}

export interface LoadOptions {
  pinRoot: string;
  objectPath?: string;
  addon?: BpfAddon;
  attachMode?: AttachMode | "auto";
  // The configured map sizes (map-sizes.ts); default: the build's (enum sl_capacity).
  mapSizes?: MapSizes;
}

// Loads (or, through the pins, reuses the maps of) the datapath. The pin root's parent must be on bpffs.
export function loadDatapath(o: LoadOptions): Datapath {
  const addon = o.addon ?? loadAddon();
  const pins = new DatapathPins(o.pinRoot);
  pins.prepare();
  unpinResizedMaps(addon, pins);
  const { object, kept, resize, resizeError } = loadSized(
    addon,
    pins,
    o.objectPath ?? defaultObjectPath(),
    o.mapSizes,
  );
  try {
    const maps = mapsOfObject(addon, object);
    const programFd = (name: string): number => {
      const p = object.programs.find((x) => x.name === name);
      if (!p) throw new Error(`BPF object has no program ${name}`);
      return p.fd;
    };
    return {
      addon,
      pins,
      object,
      maps,
      programFd,
      attachMode: o.attachMode ?? "auto",
      keptSizes: kept,
      ...(resize && { resize }),
      ...(resizeError && { resizeError }),
      programFor: (hook) => programFd(hook === "ingress" ? ProgramNames.fromPod : ProgramNames.toPod),
      close: () => object.close(),
    };
  } catch (e) {
    resize?.close();
    object.close();
    throw e;
  }
}

// The object loaded with the configured sizes (none: the build's, or whatever is pinned): pins of
// another size are kept when bigger, grown when smaller (map-resize.ts), or kept with the reason when
// growing them fails.
function loadSized(
  addon: BpfAddon,
  pins: DatapathPins,
  path: string,
  sizes: MapSizes | undefined,
): { object: LoadedObject; kept: KeptMapSize[]; resize?: MapResize; resizeError?: string } {
  if (!sizes) return { object: addon.loadObject(path, { pinRoot: pins.root }), kept: [] };
  // An agent: what an interrupted resize left are maps no program of this root's links runs with.
  rmSync(pins.resizeDir(), { recursive: true, force: true });
  const { maxEntries, kept, grow } = sizesForLoad(addon, pins, sizes);
  if (grow.length === 0) return { object: addon.loadObject(path, { pinRoot: pins.root, maxEntries }), kept };
  // The maps to grow are created beside the pinned ones and filled from them.
  const pinPaths = Object.fromEntries(grow.map((g) => [g.map, pins.resizeStaging(g.map)]));
  const object = addon.loadObject(path, { pinRoot: pins.root, maxEntries, pinPaths });
  try {
    return { object, kept, resize: MapResize.start(addon, pins, object, grow) };
  } catch (e) {
    // Not grown: this agent runs on the maps as they are pinned, and says why.
    object.close();
    rmSync(pins.resizeDir(), { recursive: true, force: true });
    return {
      object: addon.loadObject(path, { pinRoot: pins.root, maxEntries: keepPinned(maxEntries, grow) }),
      kept: [...kept, ...grow],
      resizeError: describeResizeError(e),
    };
  }
}
