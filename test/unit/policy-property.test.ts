import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { lookupIdentity, lookupVerdict } from "../../operator/src/policy/index.ts";
import { allowLocalhostMode, cluster, compiledCluster, PROBES } from "./policy-fixtures.ts";

test("compiled lookups == reference evaluator, for random clusters, policies, probes and allow-localhost modes", () => {
  fc.assert(
    fc.property(cluster, allowLocalhostMode, (c, allowLocalhost) => {
      const { ref, states, podAt, ips } = compiledCluster(c, allowLocalhost);
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
