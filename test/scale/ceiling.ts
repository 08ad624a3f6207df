// The API server's own rate for the operator's identity writes on this machine, the baseline of the
// allocation and GC rows: before the operator starts, `n` SecurityIdentity objects shaped as the
// operator's (a label set of the cluster's shape, the hash label, its field manager) are created, then
// deleted, `inFlight` at a time (the operator's allocation workers and GC concurrency), as raw JSON over
// kept-alive connections as the operator sends them. Their numbers lie above any the operator gives out
// in the run and are gone before it starts.
import { IDENTITY_HASH_LABEL, labelSetHash } from "../../operator/src/identity/allocator.ts";
import { securityLabels } from "../../operator/src/identity/labels.ts";
import { mapLimit } from "../../operator/src/lab/exec.ts";
import {
  apiVersionOf,
  collectionPath,
  objectPath,
  SECURITY_IDENTITIES,
} from "../../operator/src/kube/resources.ts";
import type { ApiHttp } from "./http.ts";

export interface WriteCeiling {
  n: number;
  createsPerS: number;
  deletesPerS: number;
}

const FIRST = 16_000_000;

export async function identityWriteCeiling(api: ApiHttp, n: number, inFlight: number): Promise<WriteCeiling> {
  const names = Array.from({ length: n }, (_, i) => String(FIRST + i));
  const body = (name: string) => {
    const labels = securityLabels(
      { metadata: { namespace: "ceiling", labels: { app: `c${name}`, tier: "t1" } } },
      { metadata: { name: "ceiling", labels: { team: "ceiling" } } },
    );
    return {
      apiVersion: apiVersionOf(SECURITY_IDENTITIES),
      kind: SECURITY_IDENTITIES.kind,
      metadata: {
        name,
        labels: {
          [IDENTITY_HASH_LABEL]: labelSetHash(labels),
          "app.kubernetes.io/managed-by": "sluice-operator",
        },
      },
      spec: { labels },
    };
  };
  const t0 = performance.now();
  await mapLimit(names, inFlight, (name) =>
    api.must("POST", `${collectionPath(SECURITY_IDENTITIES)}?fieldManager=sluice-operator`, body(name)),
  );
  const t1 = performance.now();
  await mapLimit(names, inFlight, (name) => api.must("DELETE", objectPath(SECURITY_IDENTITIES, name)));
  const t2 = performance.now();
  return { n, createsPerS: (n * 1000) / (t1 - t0), deletesPerS: (n * 1000) / (t2 - t1) };
}
