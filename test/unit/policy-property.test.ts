import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { lookupIdentity, lookupVerdict } from "../../operator/src/policy/index.ts";
import { allowLocalhostMode, cluster, compiledCluster, PROBES } from "./policy-fixtures.ts";

test("compiled lookups == reference evaluator, for random clusters, policies, probes and allow-localhost modes; audit outcomes == the reference with the Audit policies enforced", () => {
  let audited = 0;
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
            for (const [end, direction, peer] of [
              [s, "egress", dst],
              [d, "ingress", src],
            ] as const) {
              if (!end) continue;
              const st = states.get(end.node)!;
              const ep = st.endpoints.find((e) => e.key === end.key)!;
              const got = lookupVerdict(ep.policy, direction, lookupIdentity(st.ipcache, peer), proto, port);
              assert.equal(got.verdict, want[direction], `${direction} ${where}`);
              const label = `audit ${direction} ${where}`;
              assert.equal(got.audit?.verdict ?? got.verdict, want.audit[direction], label);
              assert.notEqual(got.audit?.verdict, got.verdict, `${label}: only where it differs`);
              if (got.audit) audited++;
            }
          }
        }
    }),
    { numRuns: 300 },
  );
  // The generators must make the Audit policies change some fates.
  assert.ok(audited > 0, "no probe had an audit outcome");
});
