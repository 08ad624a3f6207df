// `sluice demo` end to end (what `npm run demo` runs after setup): it must finish, agree with
// `sluice matrix`, lose and leak nothing while replacing the datapath, and leave nothing behind.
import assert from "node:assert/strict";
import { test } from "node:test";
import { requirePrivileged } from "../support/privileged.ts";
import { agentMissing, labNetns, matrixMissing, sluice } from "./lab-support.ts";

test("sluice demo: matrix before/after, 0 lost and 0 leaked under replacement, cleanup", async (t) => {
  if (!requirePrivileged(t, () => agentMissing() ?? matrixMissing())) return;
  const existing = new Set(labNetns());
  const t0 = performance.now();
  const r = await sluice(["demo"]);
  const seconds = (performance.now() - t0) / 1000;
  t.diagnostic(`demo took ${seconds.toFixed(1)} s`);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /Connectivity before policies/);
  assert.match(r.stdout, /Connectivity after policies/);
  assert.match(r.stdout, /matches `sluice matrix`/);
  // One drop explained: the verdict and the rule (or default) that decided it.
  assert.match(
    r.stdout,
    /Why one probe was dropped \(sluice explain [^\n]*\):\n[^\n]*: DENIED\n {2}dropped at /,
  );
  // The same drop in the agents' flows (sluice monitor), naming the rule explain named; the demo
  // fails itself (exit 1, a FAILED line) when they differ.
  const rule = /\n {2}dropped at [^\n]* by (\S+ (?:ingress|egress)\[\d+\])/.exec(r.stdout)?.[1];
  assert.ok(rule, "explain names a rule");
  assert.match(r.stdout, /The same drop as the datapath reported it \(sluice monitor [^\n]*\):\nTIME /);
  assert.ok(r.stdout.includes(` denied `) && r.stdout.includes(`-> `), r.stdout);
  assert.ok(
    r.stdout.split("\n").some((l) => / denied /.test(l) && l.endsWith(rule)),
    `a monitor line ending in ${rule}`,
  );
  assert.doesNotMatch(r.stdout, /FAILED/);
  assert.match(r.stdout, /lost 0\b/);
  assert.match(r.stdout, /leaked 0\b/);
  assert.match(r.stdout, /no reset/);
  const replacements = Number(/datapath replacements: (\d+)/.exec(r.stdout)?.[1]);
  assert.ok(replacements >= 200, `replaced ${replacements} times`);
  assert.ok(seconds < 120, "under two minutes");
  assert.deepEqual(
    labNetns().filter((n) => !existing.has(n)),
    [],
  );
});
