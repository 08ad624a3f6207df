// Fills the test API server with the shape's objects as fast as it takes them: concurrency-limited
// creates through one keep-alive pool (admin user, so the audit log stays Sluice's), pods created
// and then given their addresses through the status subresource as a kubelet would. Each phase is
// timed; 409 AlreadyExists is fine (a rerun against the same server).
import { mapLimit } from "../../operator/src/lab/exec.ts";
import type { ApiHttp } from "./http.ts";
import {
  namespaceObject,
  nodeObject,
  type PodPlace,
  podObject,
  podPlace,
  podStatus,
  policyCollection,
  policyObject,
  type ScaleShape,
  simNodeName,
} from "./shape.ts";

export interface PopulateTimings {
  nodesMs: number;
  namespacesMs: number;
  podsMs: number;
  policiesMs: number;
}

const CONCURRENCY = 48;

export async function createPod(http: ApiHttp, p: PodPlace): Promise<void> {
  await http.must("POST", `/api/v1/namespaces/${p.namespace}/pods`, podObject(p), undefined, [409]);
  await http.must(
    "PATCH",
    `/api/v1/namespaces/${p.namespace}/pods/${p.name}/status`,
    podStatus(p.ip),
    "application/merge-patch+json",
  );
}

export function simNodes(s: ScaleShape): string[] {
  return Array.from({ length: s.nodes - 1 }, (_, i) => simNodeName(i + 1));
}

export function podPlaces(s: ScaleShape): PodPlace[] {
  return Array.from({ length: s.pods }, (_, i) => podPlace(s, i, s.nodes - 1));
}

export async function populate(
  http: ApiHttp,
  s: ScaleShape,
  upstream: boolean,
  log: (line: string) => void,
): Promise<PopulateTimings> {
  const timed = async (what: string, n: number, fn: () => Promise<unknown>) => {
    const t0 = performance.now();
    await fn();
    const ms = performance.now() - t0;
    log(`populate: ${n} ${what} in ${(ms / 1000).toFixed(1)} s (${Math.round((n * 1000) / ms)}/s)`);
    return ms;
  };
  const nodesMs = await timed("nodes", s.nodes - 1, () =>
    mapLimit(simNodes(s), CONCURRENCY, (n) =>
      http.must("POST", "/api/v1/nodes", nodeObject(n), undefined, [409]),
    ),
  );
  const namespacesMs = await timed("namespaces", s.namespaces, () =>
    mapLimit(
      Array.from({ length: s.namespaces }, (_, i) => i),
      CONCURRENCY,
      (i) => http.must("POST", "/api/v1/namespaces", namespaceObject(i), undefined, [409]),
    ),
  );
  const podsMs = await timed("pods (create + status)", s.pods, () =>
    mapLimit(podPlaces(s), CONCURRENCY, (p) => createPod(http, p)),
  );
  const policiesMs = await timed("policies", s.policies, () =>
    mapLimit(
      Array.from({ length: s.policies }, (_, i) => policyObject(s, i, upstream)),
      CONCURRENCY,
      ({ plural: _p, ...p }) =>
        http.must("POST", policyCollection({ ...p, plural: _p }), p, undefined, [409]),
    ),
  );
  return { nodesMs, namespacesMs, podsMs, policiesMs };
}
