// Per-rule counters named and summed (stats/rule-stats.ts): a node sums its endpoints' slots per rule
// and mode, lists the rules no entry carries at 0, remembers when each rose; `sluice stats` sums nodes;
// the table says "no entry" and "never" for dead rules.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { statsTable } from "../../operator/src/cli/stats.ts";
import { ReservedRuleId } from "../../operator/src/policy/mapstate.ts";
import type { RuleName } from "../../operator/src/policy/rule-names.ts";
import {
  matchesPolicy,
  nodeRules,
  RuleActivity,
  type RuleCounterRow,
  sumRules,
} from "../../operator/src/stats/rule-stats.ts";

const rule = (
  ruleId: number,
  name: string,
  index: number,
  action: RuleName["action"] = "allow",
): RuleName => ({
  policy: `SecurityPolicy/shop/${name}`,
  kind: "SecurityPolicy",
  namespace: "shop",
  name,
  direction: "ingress",
  index,
  action,
  ruleId,
});

const rules = new Map<number, RuleName>([
  [11, rule(11, "db", 0)],
  [12, rule(12, "db", 1)],
  [21, rule(21, "audit-db", 0, "deny")],
]);

describe("nodeRules", () => {
  test("sums endpoints per rule and mode, and lists rules without entries at 0", () => {
    const rec = nodeRules({
      node: "n1",
      nowIso: "2026-12-03T10:00:00.000Z",
      rows: [
        { endpoint: "shop/db-0", ruleId: 11, audit: false, packets: 5, bytes: 500, flows: 2 },
        { endpoint: "shop/db-1", ruleId: 11, audit: false, packets: 3, bytes: 300, flows: 1 },
        { endpoint: "shop/db-0", ruleId: 21, audit: true, packets: 4, bytes: 40, flows: 4 },
        {
          endpoint: "shop/db-0",
          ruleId: ReservedRuleId.LOCALHOST,
          audit: false,
          packets: 1,
          bytes: 60,
          flows: 1,
        },
      ],
      rules,
      uncounted: 2,
    });
    const by = (policy: string, mode = "enforce", index?: number) =>
      rec.rules.find(
        (r) => r.policy === policy && r.mode === mode && (index === undefined || r.index === index),
      );
    assert.deepEqual(
      [
        by("SecurityPolicy/shop/db", "enforce", 0)?.packets,
        by("SecurityPolicy/shop/db", "enforce", 0)?.endpoints,
      ],
      [8, 2],
    );
    assert.equal(by("SecurityPolicy/shop/db", "enforce", 0)?.flows, 3);
    assert.equal(by("SecurityPolicy/shop/audit-db", "audit")?.packets, 4);
    assert.equal(by("SecurityPolicy/shop/audit-db", "enforce"), undefined, "an audited rule is listed once");
    const dead = by("SecurityPolicy/shop/db", "enforce", 1);
    assert.deepEqual([dead?.packets, dead?.endpoints], [0, 0]);
    assert.equal(by("allow-localhost")?.bytes, 60);
    assert.equal(rec.uncounted, 2);
  });

  test("an Audit policy's rules without a slot are listed in mode audit, once across nodes", () => {
    const rec = (node: string, rows: RuleCounterRow[]) =>
      nodeRules({
        node,
        nowIso: "2026-12-03T10:00:00.000Z",
        rows,
        rules,
        uncounted: 0,
        inAudit: (p) => p === "SecurityPolicy/shop/audit-db",
      });
    const idle = rec("n1", []).rules.find((r) => r.ruleId === 21);
    assert.deepEqual([idle?.mode, idle?.packets, idle?.endpoints], ["audit", 0, 0]);
    const counted = { endpoint: "shop/db-0", ruleId: 21, audit: true, packets: 4, bytes: 40, flows: 4 };
    const sum = sumRules([rec("n1", []), rec("n2", [counted])]).filter((r) => r.ruleId === 21);
    assert.deepEqual(
      sum.map((r) => [r.mode, r.packets, r.endpoints, r.nodes]),
      [["audit", 4, 1, 1]],
    );
  });

  test("the default's rows: one per direction and mode, naming the policies it is the default of", () => {
    const isolatedBy = (endpoint: string, direction: string, audit: boolean) =>
      endpoint === "shop/db-0" && direction === "ingress"
        ? audit
          ? ["SecurityPolicy/shop/audit-db", "SecurityPolicy/shop/db"]
          : ["SecurityPolicy/shop/db"]
        : audit
          ? ["SecurityPolicy/shop/audit-db"]
          : [];
    const row = (endpoint: string, direction: "ingress" | "egress", audit: boolean, packets: number) => ({
      endpoint,
      direction,
      ruleId: ReservedRuleId.DEFAULT,
      audit,
      packets,
      bytes: packets * 100,
      flows: packets,
    });
    const rec = (node: string) =>
      nodeRules({
        node,
        nowIso: "2026-12-03T10:00:00.000Z",
        rows: [
          row("shop/db-0", "ingress", true, 3),
          row("shop/db-1", "ingress", true, 2),
          row("shop/db-0", "egress", true, 1),
          row("shop/db-0", "ingress", false, 4),
        ],
        rules,
        uncounted: 0,
        isolatedBy,
      });
    const defaults = rec("n1").rules.filter((r) => r.policy === "default");
    assert.deepEqual(
      defaults.map((r) => [r.direction, r.mode, r.packets, r.endpoints, r.isolatedBy]),
      [
        ["egress", "audit", 1, 1, ["SecurityPolicy/shop/audit-db"]],
        ["ingress", "audit", 5, 2, ["SecurityPolicy/shop/audit-db", "SecurityPolicy/shop/db"]],
        ["ingress", "enforce", 4, 1, ["SecurityPolicy/shop/db"]],
      ],
    );
    const sum = sumRules([rec("n1"), rec("n2")]).filter((r) => r.policy === "default");
    assert.deepEqual(
      sum.map((r) => [r.direction, r.mode, r.packets, r.nodes]),
      [
        ["egress", "audit", 2, 2],
        ["ingress", "audit", 10, 2],
        ["ingress", "enforce", 8, 2],
      ],
    );
    // `sluice stats audit-db` lists the default it isolates; the table says whose default it is.
    assert.deepEqual(
      sum.filter((s) => matchesPolicy(s, "audit-db")).map((s) => `${s.direction} ${s.mode}`),
      ["egress audit", "ingress audit"],
    );
    assert.match(
      statsTable(sum),
      /default\s+egress \(isolated by SecurityPolicy\/shop\/audit-db\)\s+-\s+audit\s+2\s+200\s+2\s+2\s/,
    );
  });

  test("lastMatched moves only when a rule's packets rise between reads", () => {
    const activity = new RuleActivity();
    const read = (packets: number, nowIso: string) =>
      nodeRules({
        node: "n1",
        nowIso,
        rows: [{ endpoint: "shop/db-0", ruleId: 11, audit: false, packets, bytes: packets, flows: 1 }],
        rules,
        uncounted: 0,
        activity,
      }).rules.find((r) => r.ruleId === 11)?.lastMatched;
    assert.equal(read(0, "2026-12-03T10:00:00.000Z"), undefined);
    assert.equal(read(2, "2026-12-03T10:01:00.000Z"), "2026-12-03T10:01:00.000Z");
    assert.equal(read(2, "2026-12-03T10:02:00.000Z"), "2026-12-03T10:01:00.000Z");
    assert.equal(read(3, "2026-12-03T10:03:00.000Z"), "2026-12-03T10:03:00.000Z");
  });
});

describe("sumRules and the table", () => {
  const at = (node: string, packets: number, endpoints: number, lastMatched?: string) =>
    nodeRules({
      node,
      nowIso: lastMatched ?? "2026-12-03T10:00:00.000Z",
      rows: Array.from({ length: endpoints }, (_, i) => ({
        endpoint: `shop/db-${i}`,
        ruleId: 11,
        audit: false,
        packets: packets / endpoints,
        bytes: packets,
        flows: 1,
      })),
      rules,
      uncounted: 0,
    });

  test("adds nodes, endpoints and counts; keeps the latest match", () => {
    const sum = sumRules([at("n1", 4, 2), at("n2", 6, 1), at("n3", 0, 0)]);
    const r = sum.find((s) => s.ruleId === 11)!;
    assert.deepEqual([r.packets, r.endpoints, r.nodes, r.flows], [10, 3, 2, 3]);
    const dead = sum.find((s) => s.ruleId === 12)!;
    assert.deepEqual([dead.packets, dead.endpoints, dead.nodes], [0, 0, 0]);
    const table = statsTable(sum);
    assert.match(table.split("\n")[0]!, /^POLICY\s+RULE\s+ACTION\s+MODE\s+PACKETS/);
    assert.match(
      table,
      /SecurityPolicy\/shop\/db\s+ingress\[1\]\s+allow\s+enforce\s+0\s+0\s+0\s+0\s+no entry/,
    );
  });

  test("a policy is named by kind/ns/name, ns/name or name", () => {
    const s = sumRules([at("n1", 1, 1)]).find((x) => x.ruleId === 11)!;
    assert.ok(matchesPolicy(s, "SecurityPolicy/shop/db"));
    assert.ok(matchesPolicy(s, "shop/db"));
    assert.ok(matchesPolicy(s, "db"));
    assert.ok(!matchesPolicy(s, "audit-db"));
  });
});
