// `sluice explain` against the datapath's decision: for random clusters and policies (the property
// tests' generators), every pair of addresses and every probe, explain's verdict and deciding rule id
// on each side equal what the compiled map state of that side's node decides (compile() of the whole
// node, then the BPF lookup simulated) and the reference evaluator's verdict; with Audit policies, the
// audit outcome too (what they would decide where it differs).
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { Explainer } from "../../operator/src/policy/explain.ts";
import { lookupIdentity, lookupVerdict } from "../../operator/src/policy/index.ts";
import { ReservedRuleId } from "../../operator/src/policy/mapstate.ts";
import { allowLocalhostMode, cluster, compiledCluster, NODE_ADDRESSES, PROBES } from "./policy-fixtures.ts";

test("explain == compiled map lookup (verdict and rule id) == reference, for random clusters", () => {
  let decidedByRules = 0;
  let checked = 0;
  let audited = 0;
  fc.assert(
    fc.property(cluster, allowLocalhostMode, (c, allowLocalhost) => {
      const { inputs, ref, states, podAt, ips } = compiledCluster(c, allowLocalhost);
      const explainer = new Explainer(inputs, { allowLocalhost, hostAddresses: NODE_ADDRESSES });
      const mapDecision = (
        node: string,
        key: string,
        direction: "egress" | "ingress",
        peer: string,
        proto: number,
        port: number,
      ) => {
        const st = states.get(node)!;
        const ep = st.endpoints.find((e) => e.key === key)!;
        const r = lookupVerdict(ep.policy, direction, lookupIdentity(st.ipcache, peer), proto, port);
        return {
          verdict: r.verdict,
          ruleId: r.entry?.ruleId ?? ReservedRuleId.DEFAULT,
          ...(r.audit ? { audit: r.audit } : {}),
        };
      };
      for (const src of ips)
        for (const dst of ips) {
          if (src === dst || src.includes(":") !== dst.includes(":")) continue;
          for (const [proto, port] of PROBES) {
            const where = `${src} -> ${dst} proto ${proto} port ${port}`;
            const want = ref.evaluate(src, dst, proto, port);
            const got = explainer.explain(src, dst, proto, port);
            const s = podAt.get(src);
            const d = podAt.get(dst);
            assert.equal(got.egress !== undefined, s !== undefined, where);
            assert.equal(got.ingress !== undefined, d !== undefined, where);
            for (const [side, end, peer] of [
              [got.egress, s, dst],
              [got.ingress, d, src],
            ] as const) {
              if (!side || !end) continue;
              const map = mapDecision(end.node, end.key, side.direction, peer, proto, port);
              const label = `${side.direction} ${where}: ${JSON.stringify(side.steps)}`;
              const explained = {
                verdict: side.decision.verdict,
                ruleId: side.decision.ruleId,
                ...(side.audit ? { audit: { verdict: side.audit.verdict, ruleId: side.audit.ruleId } } : {}),
              };
              assert.deepEqual(explained, map, label);
              assert.deepEqual(side.datapath, map, label);
              assert.ok(side.agrees, label);
              assert.equal(side.decision.verdict, want[side.direction], label);
              assert.equal(side.audit?.verdict ?? side.decision.verdict, want.audit[side.direction], label);
              if (side.audit) audited++;
              checked++;
              if (side.decision.by === "rule") decidedByRules++;
            }
            assert.equal(got.verdict, want.verdict, where);
          }
        }
    }),
    { numRuns: 200 },
  );
  // The generators must exercise rules, not only defaults.
  assert.ok(decidedByRules > checked / 10, `${decidedByRules} of ${checked} decided by a rule`);
  assert.ok(audited > 0, "no side had an audit outcome");
});
