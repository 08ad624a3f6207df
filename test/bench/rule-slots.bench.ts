// Rule counter slots (datapath/writer/rule-slots.ts) on every map write, pure TypeScript: the cost of
// giving 1,000,000 policy entries of 100 endpoints their slots on the first write, and on a delta write
// where one endpoint changed (the desired cache hands the other 99 over as the same objects, so
// they are not walked). Baseline in the same run: the same delta write with every endpoint rebuilt,
// i.e. a walk of every entry, which is what every write cost before unchanged endpoints were skipped.
// Run: node test/bench/rule-slots.bench.ts [--endpoints 100] [--entries 10000] [--rules 50] [--trials 7]
import { parseArgs } from "node:util";
import type { StoredEntry } from "../../operator/src/datapath/codec/keys.ts";
import { RuleSlots } from "../../operator/src/datapath/writer/rule-slots.ts";
import type { DesiredEndpoint, DesiredState } from "../../operator/src/datapath/writer/sync-plan.ts";
import { machine, markdownTable, median, ratio } from "./table.ts";

const { values: args } = parseArgs({
  options: {
    endpoints: { type: "string", default: "100" },
    entries: { type: "string", default: "10000" },
    rules: { type: "string", default: "50" },
    trials: { type: "string", default: "7" },
  },
});
const ENDPOINTS = Number(args.endpoints);
const ENTRIES = Number(args.entries);
const RULES = Number(args.rules);
const TRIALS = Number(args.trials);

function endpoint(id: number): DesiredEndpoint {
  const entries = new Map<string, StoredEntry>();
  for (let i = 0; i < ENTRIES; i++)
    entries.set(`e${i}`, {
      direction: i % 2 ? "ingress" : "egress",
      identity: 256 + (i % 500),
      protocol: 6,
      port: i % 65536,
      portPrefixLen: 16,
      verdict: "allow",
      ruleId: 1000 + (i % RULES),
      ...(i % 10 === 0 ? { audit: { verdict: "deny" as const, ruleId: 5000 + (i % RULES) } } : {}),
    });
  return { key: `bench/pod-${id}`, ifindex: 100 + id, id, identity: 300 + id, flags: 0, entries };
}

// A copy of the endpoint as a rebuilt one: new objects, the same entries' content.
function rebuilt(d: DesiredEndpoint): DesiredEndpoint {
  const entries = new Map<string, StoredEntry>();
  for (const [k, e] of d.entries as ReadonlyMap<string, StoredEntry>) entries.set(k, { ...e });
  return { ...d, entries };
}

function timed(f: () => void): number {
  const t = performance.now();
  f();
  return performance.now() - t;
}

const first: number[] = [];
const oneChanged: number[] = [];
const allRebuilt: number[] = [];
for (let trial = 0; trial < TRIALS; trial++) {
  const eps = new Map<number, DesiredEndpoint>();
  for (let id = 1; id <= ENDPOINTS; id++) {
    const d = endpoint(id);
    eps.set(d.ifindex, d);
  }
  const state = (): DesiredState => ({ ipcache: new Map(), endpoints: new Map(eps) });
  const slots = new RuleSlots(65536);
  first.push(timed(() => slots.assign(state())));
  // Interleaved: one endpoint rebuilt, then every endpoint rebuilt (built outside the timing).
  const changed = eps.get(101);
  if (!changed) throw new Error("no endpoint 1");
  eps.set(101, rebuilt(changed));
  const one = state();
  oneChanged.push(timed(() => slots.assign(one)));
  for (const [k, d] of eps) eps.set(k, rebuilt(d));
  const all = state();
  const r = { uncounted: -1, zero: [] as number[] };
  allRebuilt.push(
    timed(() => {
      Object.assign(r, slots.assign(all));
    }),
  );
  // Same pairs: nothing handed out, everything counted.
  if (r.uncounted !== 0 || r.zero.length !== 0) throw new Error("a rebuilt endpoint's pairs changed slots");
}

const base = median(allRebuilt);
console.log(`rule slots: ${ENDPOINTS} endpoints × ${ENTRIES} entries, ${RULES} rules; median of ${TRIALS}`);
console.log(await machine());
console.log(
  markdownTable(
    ["write", "time", "× every endpoint walked"],
    [
      ["first write (every entry walked)", `${median(first).toFixed(1)} ms`, ratio(median(first), base)],
      ["delta: every endpoint rebuilt (baseline)", `${base.toFixed(1)} ms`, "1.00×"],
      [
        "delta: one endpoint rebuilt, the others the same objects",
        `${median(oneChanged).toFixed(1)} ms`,
        ratio(median(oneChanged), base),
      ],
    ],
  ),
);
