import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  compile,
  inputsFromObjects,
  lookupIdentity,
  lookupVerdict,
  ReferenceEvaluator,
} from "../../operator/src/policy/index.ts";
import type { MapState } from "../../operator/src/policy/mapstate.ts";
import { podIps } from "../../operator/src/policy/universe.ts";
import {
  allowLocalhostMode,
  cluster,
  EXTERNAL_IPS,
  NODE_ADDRESSES,
  NODES,
  PROBES,
} from "./policy-fixtures.ts";
import { asObjects } from "./policy-fixtures.ts";

test("compiled lookups == reference evaluator, for random clusters, policies, probes and allow-localhost modes", () => {
  fc.assert(
    fc.property(cluster, allowLocalhostMode, (c, allowLocalhost) => {
      const inputs = inputsFromObjects(asObjects(c));
      const ref = new ReferenceEvaluator(inputs, { allowLocalhost, hostAddresses: NODE_ADDRESSES });
      const states = new Map<string, MapState>(
        NODES.map((n) => [
          n,
          compile(inputs, { node: n, allowLocalhost, hostAddresses: NODE_ADDRESSES.get(n) }).state,
        ]),
      );
      const podAt = new Map<string, { key: string; node: string }>();
      for (const p of c.pods)
        for (const ip of podIps(p))
          podAt.set(ip, { key: `${p.metadata.namespace}/${p.metadata.name}`, node: p.spec!.nodeName! });
      const ips = [...podAt.keys(), ...EXTERNAL_IPS];
      for (const src of ips)
        for (const dst of ips) {
          if (src === dst || src.includes(":") !== dst.includes(":")) continue;
          for (const [proto, port] of PROBES) {
            const want = ref.evaluate(src, dst, proto, port);
            const s = podAt.get(src);
            const d = podAt.get(dst);
            const where = `${src} -> ${dst} proto ${proto} port ${port}`;
            if (s) {
              const st = states.get(s.node)!;
              const ep = st.endpoints.find((e) => e.key === s.key)!;
              const got = lookupVerdict(
                ep.policy,
                "egress",
                lookupIdentity(st.ipcache, dst),
                proto,
                port,
              ).verdict;
              assert.equal(got, want.egress, `egress ${where}`);
            }
            if (d) {
              const st = states.get(d.node)!;
              const ep = st.endpoints.find((e) => e.key === d.key)!;
              const got = lookupVerdict(
                ep.policy,
                "ingress",
                lookupIdentity(st.ipcache, src),
                proto,
                port,
              ).verdict;
              assert.equal(got, want.ingress, `ingress ${where}`);
            }
          }
        }
    }),
    { numRuns: 300 },
  );
});
