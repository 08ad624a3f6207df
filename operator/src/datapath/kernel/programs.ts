// Loading the datapath object: programs by role, typed maps, all maps pinned under one bpffs root, which
// the loaded datapath carries (pins): its links, markers and older layouts' maps are found from it.
import { join } from "node:path";
import { type BpfAddon, type LoadedObject, loadAddon, repoRoot } from "./bpf-addon.ts";
import type { AttachMode } from "./links.ts";
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
}

// Loads (or, through the pins, reuses the maps of) the datapath. The pin root's parent must be on bpffs.
export function loadDatapath(o: LoadOptions): Datapath {
  const addon = o.addon ?? loadAddon();
  const pins = new DatapathPins(o.pinRoot);
  pins.prepare();
  unpinResizedMaps(addon, pins);
  const object = addon.loadObject(o.objectPath ?? defaultObjectPath(), { pinRoot: pins.root });
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
      programFor: (hook) => programFd(hook === "ingress" ? ProgramNames.fromPod : ProgramNames.toPod),
      close: () => object.close(),
    };
  } catch (e) {
    object.close();
    throw e;
  }
}
