// What one cached pod costs (issue 14: the informers' pod caches dominate both daemons' heaps at
// 50,000 pods). 50,000 pods of the scale rig's shape (test/scale/shape.ts), each decoded from its own
// JSON text as a watch event delivers it (with the metadata the API server adds: uid, resourceVersion,
// timestamps, managedFields, a Ready condition), are kept by each view the caches have used: the object
// as decoded; podView (kube/cache-view.ts: a node's own pods); peerPodView (every other pod: the label
// set, port lists and names interned). Baseline, in the same run: podView, what every pod cost before.
// Retained heap after full collections, and the time to decode and view them all (median of 3).
// Run: node --expose-gc test/bench/pod-cache.bench.ts
import type { KubernetesObject } from "@kubernetes/client-node";
import { podView, peerPodView } from "../../operator/src/kube/cache-view.ts";
import { Interner } from "../../operator/src/kube/interner.ts";
import { FULL_SCALE, podObject, podPlace, podStatus } from "../scale/shape.ts";
import { machine, markdownTable, median, ratio } from "./table.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --expose-gc: retained heap is read after full collections");
const PODS = FULL_SCALE.pods;

// Pod i as the API server sends it.
function wire(i: number): string {
  const place = podPlace(FULL_SCALE, i, FULL_SCALE.nodes - 1);
  const o = { ...podObject(place), ...podStatus(place.ip) } as unknown as Record<
    string,
    Record<string, unknown>
  >;
  Object.assign(o.metadata, {
    uid: `5e0c${String(i).padStart(8, "0")}-7d1c-4b6f-9a1e-3f2b8c0d4e5f`,
    resourceVersion: String(1_000_000 + i),
    creationTimestamp: "2026-12-04T10:00:00Z",
    managedFields: [
      { manager: "scale-rig", operation: "Update", apiVersion: "v1", time: "2026-12-04T10:00:00Z" },
      { manager: "kubelet", operation: "Update", apiVersion: "v1", subresource: "status" },
    ],
  });
  Object.assign(o.status, { conditions: [{ type: "Ready", status: "True" }] });
  return JSON.stringify(o);
}

function heapUsed(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

type View = (o: KubernetesObject) => KubernetesObject;

// The views kept while their heap is read (a local the optimiser sees unused could go first).
let held: KubernetesObject[] = [];

function measure(view: () => View): { bytesPerPod: number; ms: number } {
  const texts = Array.from({ length: PODS }, (_, i) => wire(i));
  const times: number[] = [];
  let bytes = 0;
  for (let round = 0; round < 3; round++) {
    const v = view();
    const before = heapUsed();
    const t0 = performance.now();
    held = texts.map((t) => v(JSON.parse(t) as KubernetesObject));
    times.push(performance.now() - t0);
    bytes = heapUsed() - before;
    if (held.length !== PODS) throw new Error("lost pods");
    held = [];
  }
  return { bytesPerPod: bytes / PODS, ms: median(times) };
}

const views: [string, () => View][] = [
  ["podView (baseline: every pod before)", () => podView],
  ["as decoded (no view)", () => (o) => o],
  [
    "peerPodView (other nodes' pods; the operator's)",
    () => {
      const interner = new Interner();
      return (o) => peerPodView(o, interner);
    },
  ],
];

const results = views.map(([name, v]) => ({ name, ...measure(v) }));
const base = results[0];
console.log(`Pod cache, ${PODS} pods of the scale rig's shape; ${await machine()}\n`);
console.log(
  markdownTable(
    ["view", "heap per pod", "ratio", `heap for ${PODS} pods`, "decode + view, all pods", "ratio (time)"],
    results.map((r) => [
      r.name,
      `${Math.round(r.bytesPerPod)} B`,
      ratio(r.bytesPerPod, base.bytesPerPod),
      `${((r.bytesPerPod * PODS) / 2 ** 20).toFixed(1)} MiB`,
      `${Math.round(r.ms)} ms`,
      ratio(r.ms, base.ms),
    ]),
  ),
);
