// The native addon (bpf/build/sluice_bpf.node) and its typed interface. The addon is a thin layer over
// libbpf: fds and byte buffers in and out, no policy logic. Everything typed lives in this folder.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export type HookDirection = "ingress" | "egress";

export interface ProgramInfo {
  name: string;
  section: string;
  fd: number;
  type: number;
}

export interface LoadedMapInfo {
  name: string;
  fd: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  pinPath: string | null;
  pinned: boolean;
}

export interface LoadedObject {
  programs: ProgramInfo[];
  maps: LoadedMapInfo[];
  // Closes every program and map fd of the object (pinned maps and links keep their kernel objects).
  close(): void;
}

export interface MapInfo {
  id: number;
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export interface LinkInfo {
  id: number;
  type: number;
  progId: number;
  // 0 when the device went away.
  ifindex: number;
  attachType: number;
}

export interface BpfProgInfo {
  id: number;
  type: number;
  name: string;
  tag: string;
}

export interface DumpResult {
  keys: Buffer;
  values: Buffer;
  count: number;
  batched: boolean;
}

export interface TestRunOptions {
  data: Uint8Array;
  ctx?: Uint8Array;
  repeat?: number;
  dataSizeOut?: number;
}

export interface TestRunResult {
  retval: number;
  durationNs: number;
  dataOut: Buffer;
  ctxOut: Buffer | null;
}

export interface TcAttachOptions {
  handle?: number;
  priority?: number;
  replace?: boolean;
}

export interface RingBufferHandle {
  stop(): void;
  ref(): void;
  unref(): void;
}

export interface BpfAddon {
  // maxEntries: max_entries by map name, set between open and load (a pin of another size is refused);
  // pinPaths: a pin path by map name instead of <pinRoot>/<name> (a map being grown).
  loadObject(
    path: string,
    options?: { pinRoot?: string; maxEntries?: Record<string, number>; pinPaths?: Record<string, string> },
  ): LoadedObject;
  mapInfo(fd: number): MapInfo;
  mapLookup(fd: number, key: Uint8Array, valueOut: Uint8Array): boolean;
  mapUpdate(fd: number, key: Uint8Array, value: Uint8Array, flags?: number): void;
  mapDelete(fd: number, key: Uint8Array): boolean;
  mapLookupAndDelete(fd: number, key: Uint8Array, valueOut: Uint8Array): boolean;
  mapGetNextKey(fd: number, key: Uint8Array | null, nextOut: Uint8Array): boolean;
  mapUpdateBatch(fd: number, keys: Uint8Array, values: Uint8Array, count: number, elemFlags?: number): number;
  mapDeleteBatch(fd: number, keys: Uint8Array, count: number, elemFlags?: number): number;
  mapLookupBatch(
    fd: number,
    inToken: Uint8Array | null,
    outToken: Uint8Array,
    keysOut: Uint8Array,
    valuesOut: Uint8Array,
    count: number,
  ): { count: number; more: boolean };
  mapKeys(fd: number): { keys: Buffer; count: number };
  mapDump(fd: number): DumpResult;
  objGet(path: string): number;
  objPin(fd: number, path: string): void;
  closeFd(fd: number): void;
  progInfo(fd: number): BpfProgInfo;
  ifNameToIndex(name: string): number;
  numPossibleCpus(): number;
  // Returns after an RCU grace period: no program still runs with a map value read before the call.
  waitForPrograms(): void;
  attachTcx(progFd: number, ifindex: number, direction: HookDirection): number;
  linkUpdate(linkFd: number, newProgFd: number, oldProgFd?: number): void;
  linkDetach(linkFd: number): void;
  linkInfo(linkFd: number): LinkInfo;
  tcAttach(
    progFd: number,
    ifindex: number,
    direction: HookDirection,
    options?: TcAttachOptions,
  ): { handle: number; priority: number; progId: number };
  tcQuery(
    ifindex: number,
    direction: HookDirection,
    handle: number,
    priority: number,
  ): { progId: number } | null;
  tcDetach(ifindex: number, direction: HookDirection, handle: number, priority: number): void;
  tcHookDestroy(ifindex: number): void;
  progTestRun(progFd: number, options: TestRunOptions): TestRunResult;
  RingBuffer: new (
    mapFd: number,
    onRecords: (records: Buffer[]) => void,
    options?: { pollMs?: number },
  ) => RingBufferHandle;
}

// Error thrown by the addon for a failed syscall/libbpf call.
export interface BpfError extends Error {
  op: string;
  errno: number;
  code: string;
  // Load failures: the kernel verifier's log and libbpf's messages.
  verifierLog?: string;
  libbpfLog?: string;
  // Batch failures: how many leading elements were processed.
  done?: number;
}

export function isBpfError(e: unknown): e is BpfError {
  return (
    e instanceof Error &&
    typeof (e as Partial<BpfError>).op === "string" &&
    typeof (e as Partial<BpfError>).code === "string"
  );
}

export function hasErrnoCode(e: unknown, ...codes: string[]): e is BpfError {
  return isBpfError(e) && codes.includes(e.code);
}

// BPF map flags for update.
export const UpdateFlags = { ANY: 0, NOEXIST: 1, EXIST: 2 } as const;

// BPF map types used by the datapath (uapi enum bpf_map_type).
export const MapType = {
  HASH: 1,
  ARRAY: 2,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LPM_TRIE: 11,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  RINGBUF: 27,
} as const;

export function repoRoot(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
}

export function defaultAddonPath(): string {
  return process.env.SLUICE_ADDON ?? join(repoRoot(), "bpf/build/sluice_bpf.node");
}

let cached: BpfAddon | undefined;

// Loads the addon once per process. Throws a clear error when it was not built.
export function loadAddon(path: string = defaultAddonPath()): BpfAddon {
  if (cached) return cached;
  if (!existsSync(path))
    throw new Error(`native addon not found at ${path}: run \`make -C bpf\` (scripts/build.sh)`);
  const require = createRequire(import.meta.url);
  cached = require(path) as BpfAddon;
  return cached;
}
