// The API server's own rate for the operator's identity writes on this machine, the baseline of the
// allocation and GC rows: before the operator starts, `n` SecurityIdentity objects as the operator
// creates them (identityCreate: its path, body and field manager; a label set of the cluster's shape)
// are created, then
// deleted, `inFlight` at a time (the operator's allocation workers and GC concurrency), as raw JSON over
// kept-alive connections as the operator sends them. Their numbers lie above any the operator gives out
// in the run and are gone before it starts.
import { identityCreate } from "../../operator/src/controllers/identity-controller.ts";
import { labelSetHash } from "../../operator/src/identity/allocator.ts";
import { securityLabels } from "../../operator/src/identity/labels.ts";
import { mapLimit } from "../../operator/src/lab/exec.ts";
import { objectPath, SECURITY_IDENTITIES } from "../../operator/src/kube/resources.ts";
import type { ApiHttp } from "./http.ts";

export interface WriteCeiling {
  n: number;
  createsPerS: number;
  deletesPerS: number;
}

const FIRST = 16_000_000;

export async function identityWriteCeiling(api: ApiHttp, n: number, inFlight: number): Promise<WriteCeiling> {
  const names = Array.from({ length: n }, (_, i) => String(FIRST + i));
  const create = (name: string) => {
    const labels = securityLabels(
      { metadata: { namespace: "ceiling", labels: { app: `c${name}`, tier: "t1" } } },
      { metadata: { name: "ceiling", labels: { team: "ceiling" } } },
    );
    return identityCreate(Number(name), labelSetHash(labels), labels);
  };
  const t0 = performance.now();
  await mapLimit(names, inFlight, (name) => {
    const { path, body } = create(name);
    return api.must("POST", path, body);
  });
  const t1 = performance.now();
  await mapLimit(names, inFlight, (name) => api.must("DELETE", objectPath(SECURITY_IDENTITIES, name)));
  const t2 = performance.now();
  return { n, createsPerS: (n * 1000) / (t1 - t0), deletesPerS: (n * 1000) / (t2 - t1) };
}
