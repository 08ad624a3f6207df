// Map sync throughput from TypeScript through the addon, single-element vs batch updates, 1e5 and 1e6
// policy entries written as the map writer stores them (policy-store.ts: one record per (endpoint,
// generation, direction, identity) group in sl_pset, big groups' spill in sl_pexact / sl_pol), against a
// small C program (test/bench/native/batch_loop.c, built here with gcc -O2 -lbpf) making the same libbpf
// calls on the same pinned maps with the same bytes, in the same run. Every measurement starts from empty
// maps. Target: TS batch (grouping and encoding included) >= 75 % of the C loop's throughput.
// Each figure is the median of --trials runs, the C and TS runs interleaved, after an untimed warm-up
// (the TS encoding a few times, then one discarded round of every measurement) so that the TS figures
// are those of optimised code. The timed TS encodings reuse one PolicyWriteScratch, as a MapSync does
// across syncs, and are checked against reference records encoded with buffers of their own.
// Run as root: node test/bench/mapsync.bench.ts [--sizes 100000,1000000] [--trials 7]
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as C from "../../operator/src/datapath/codec/codecs.ts";
import { policyKeyOf, policyValueOf } from "../../operator/src/datapath/codec/keys.ts";
import { MapNames } from "../../operator/src/datapath/kernel/maps.ts";
import {
  INLINE,
  type PolicyBatch,
  type PolicyEntryRef,
} from "../../operator/src/datapath/writer/policy-encoder.ts";
import {
  applyPolicyRecords,
  countPolicyEntries,
  type PolicyRecordBatches,
  PolicyWriteScratch,
  policyRecordBatches,
} from "../../operator/src/datapath/writer/policy-store.ts";
import { arrangeGroup, groupsOf } from "../../operator/src/datapath/writer/group-arrangement.ts";
import type { PolicyEntry } from "../../operator/src/policy/mapstate.ts";
import { type Datapath, loadDatapath } from "../../operator/src/datapath/kernel/programs.ts";
import { referenceSetRecord } from "../support/policy-reference.ts";
import { machine, markdownTable, median, requireRoot } from "./table.ts";

const { values: args } = parseArgs({
  options: { sizes: { type: "string", default: "100000,1000000" }, trials: { type: "string", default: "7" } },
});
const SIZES = (args.sizes ?? "").split(",").map(Number);
const TRIALS = Number(args.trials);
const WARMUP = 5;

requireRoot("mapsync.bench");

const here = dirname(fileURLToPath(import.meta.url));
const pinRoot = `/sys/fs/bpf/sluice-bench-${process.pid}-${randomBytes(4).toString("hex")}`;
const work = mkdtempSync(join(tmpdir(), "sluice-mapsync-"));
let dp: Datapath | undefined;

function cleanup(): void {
  dp?.close();
  rmSync(pinRoot, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

// n distinct entries as the compiler emits them: 10 ports per (endpoint, identity), 10k per endpoint.
type Item = PolicyEntryRef;
function items(n: number): Item[] {
  const out: Item[] = [];
  for (let i = 0; i < n; i++)
    out.push({
      epId: 1 + Math.floor(i / 10_000),
      gen: 0,
      entry: {
        direction: i % 2 === 0 ? "ingress" : "egress",
        identity: 256 + Math.floor((i % 10_000) / 10),
        protocol: 6,
        port: 1000 + (i % 10) * 10,
        portPrefixLen: 16,
        verdict: "allow",
        ruleId: i,
      },
    });
  return out;
}

const NO_ENTRIES = new Map<string, PolicyEntry>();

// MapSync's path for a full write: group, arrange and encode (policy-store.ts), into the working memory
// a MapSync keeps across syncs. Each call starts by zeroing what the previous one wrote.
const scratch = new PolicyWriteScratch();
function encodeFast(xs: readonly Item[]): PolicyRecordBatches {
  return policyRecordBatches(() => NO_ENTRIES, [], xs as (Item & { gen: 0 })[], { scratch });
}

// The same records through the generic StructCodecs and keys.ts objects, for comparison.
function encodeGeneric(xs: readonly Item[]): Record<"sets" | "exact" | "lpm", PolicyBatch> {
  const byEndpoint = new Map<number, PolicyEntry[]>();
  for (const x of xs) {
    const l = byEndpoint.get(x.epId) ?? [];
    l.push(x.entry);
    byEndpoint.set(x.epId, l);
  }
  const sk: Uint8Array[] = [];
  const sv: Uint8Array[] = [];
  const xk: Uint8Array[] = [];
  const xv: Uint8Array[] = [];
  const lk: Uint8Array[] = [];
  const lv: Uint8Array[] = [];
  for (const [epId, entries] of byEndpoint)
    for (const g of groupsOf(entries).values()) {
      const { inline, exact, lpm } = arrangeGroup(g, INLINE);
      const dir = g[0].direction === "ingress" ? 0 : 1;
      const set = referenceSetRecord(epId, 0, g[0].direction, g[0].identity, { inline, exact, lpm });
      sk.push(set.key);
      sv.push(set.value);
      for (const e of exact) {
        xk.push(
          C.policyExactKey.encode({
            ep_id: epId,
            identity: e.identity,
            gen: 0,
            dir,
            proto: e.protocol,
            port: e.port,
          }),
        );
        xv.push(C.policyValue.encode(policyValueOf(e)));
      }
      for (const e of lpm) {
        lk.push(C.policyKey.encode(policyKeyOf(epId, 0, e)));
        lv.push(C.policyValue.encode(policyValueOf(e)));
      }
    }
  const batch = (k: Uint8Array[], v: Uint8Array[]): PolicyBatch => ({
    keys: Buffer.concat(k),
    values: Buffer.concat(v),
    count: k.length,
  });
  return { sets: batch(sk, sv), exact: batch(xk, xv), lpm: batch(lk, lv) };
}

// The same records, in any order.
function sameRecords(a: PolicyBatch, b: PolicyBatch): boolean {
  if (a.count !== b.count || a.keys.length !== b.keys.length || a.values.length !== b.values.length)
    return false;
  const ks = a.keys.length / Math.max(1, a.count);
  const vs = a.values.length / Math.max(1, a.count);
  const records = (x: PolicyBatch) => {
    const out = new Map<string, string>();
    for (let i = 0; i < x.count; i++)
      out.set(
        Buffer.from(x.keys.subarray(i * ks, (i + 1) * ks)).toString("hex"),
        Buffer.from(x.values.subarray(i * vs, (i + 1) * vs)).toString("hex"),
      );
    return out;
  };
  const ra = records(a);
  const rb = records(b);
  return ra.size === a.count && [...ra].every(([k, v]) => rb.get(k) === v);
}

interface Row {
  what: string;
  ns: Map<number, number>;
  trials: number[];
}

async function main(): Promise<void> {
  const bin = join(work, "batch_loop");
  execFileSync("gcc", ["-O2", "-Wall", "-o", bin, join(here, "native/batch_loop.c"), "-lbpf"], {
    stdio: "inherit",
  });
  dp = loadDatapath({ pinRoot });
  const d = dp;
  const m = d.maps;
  const rows: Row[] = [
    "C: bpf_map_update_elem per record",
    "TS: addon.mapUpdate per record (MapSync's encoding)",
    "C: one bpf_map_update_batch per map",
    "TS: MapSync's grouping + encoding + one addon.mapUpdateBatch per map",
    "TS: the addon.mapUpdateBatch calls alone",
    "TS: generic StructCodec encoding + the same batch calls",
  ].map((what) => ({ what, ns: new Map(), trials: [] }));
  const record = (i: number, ns: number) => rows[i].trials.push(ns);
  const targets = [
    { name: "sets", map: m.policySets, pin: join(pinRoot, MapNames.policySets) },
    { name: "exact", map: m.policyExact, pin: join(pinRoot, MapNames.policyExact) },
    { name: "lpm", map: m.policyLpm, pin: join(pinRoot, MapNames.policyLpm) },
  ] as const;
  const notes: string[] = [];

  for (const size of SIZES) {
    const xs = items(size);
    // The reference records (own buffers; the timed calls reuse the shared scratch's).
    const fast = policyRecordBatches(() => NO_ENTRIES, [], xs as (Item & { gen: 0 })[]);
    const put = { sets: fast.setPut, exact: fast.exactPut, lpm: fast.lpmPut };
    const generic = encodeGeneric(xs);
    for (const t of targets) {
      const a = put[t.name];
      const b = generic[t.name];
      if (!sameRecords(a, b)) throw new Error(`${t.name}: MapSync's encoder and the generic codecs disagree`);
      writeFileSync(join(work, `${t.name}.keys`), a.keys);
      writeFileSync(join(work, `${t.name}.values`), a.values);
    }
    notes.push(
      `${size}: ${put.sets.count} group records, ${put.exact.count} exact, ${put.lpm.count} LPM records`,
    );
    const empty = () => {
      for (const t of targets) {
        const k = d.addon.mapKeys(t.map.fd);
        if (k.count > 0) t.map.deleteManyRaw(k.keys, k.count);
      }
      if (countPolicyEntries(m) !== 0) throw new Error("policy maps not empty after clearing");
    };
    const full = () => {
      const n = countPolicyEntries(m);
      if (n !== size) throw new Error(`policy maps hold ${n} entries, expected ${size}`);
    };
    const c = (mode: string) => {
      let ns = 0;
      for (const t of targets) {
        if (put[t.name].count === 0) continue;
        ns += Number(
          execFileSync(
            bin,
            [
              mode,
              t.pin,
              join(work, `${t.name}.keys`),
              join(work, `${t.name}.values`),
              String(put[t.name].count),
            ],
            { encoding: "utf8" },
          ).trim(),
        );
      }
      return ns;
    };
    const batchCalls = (b: { sets: PolicyBatch; exact: PolicyBatch; lpm: PolicyBatch }) => {
      for (const t of targets)
        if (b[t.name].count > 0) t.map.setManyRaw(b[t.name].keys, b[t.name].values, b[t.name].count);
    };

    // Untimed warm-up, so that the trials measure optimised code (the C loop is compiled ahead of
    // time): one whole round of every measurement, discarded (its first calls of the process may
    // invalidate V8 protectors, which deoptimises the encoder), then a few more TS encodings.
    for (let trial = -1; trial < TRIALS; trial++) {
      if (trial === 0) {
        for (const r of rows) r.trials = [];
        for (let w = 0; w < WARMUP; w++) encodeFast(xs);
      }
      empty();
      record(0, c("single"));
      full();

      empty();
      let t0 = process.hrtime.bigint();
      for (const t of targets) {
        const b = put[t.name];
        const ks = b.keys.length / Math.max(1, b.count);
        const vs = b.values.length / Math.max(1, b.count);
        for (let i = 0; i < b.count; i++)
          d.addon.mapUpdate(
            t.map.fd,
            b.keys.subarray(i * ks, (i + 1) * ks),
            b.values.subarray(i * vs, (i + 1) * vs),
          );
      }
      record(1, Number(process.hrtime.bigint() - t0));
      full();

      empty();
      record(2, c("batch"));
      full();

      empty();
      t0 = process.hrtime.bigint();
      const enc = encodeFast(xs);
      const t1 = process.hrtime.bigint();
      applyPolicyRecords(m, enc);
      const t2 = process.hrtime.bigint();
      record(3, Number(t2 - t0));
      record(4, Number(t2 - t1));
      full();
      for (const [name, b] of [
        ["sets", enc.setPut],
        ["exact", enc.exactPut],
        ["lpm", enc.lpmPut],
      ] as const)
        if (Buffer.compare(b.keys, put[name].keys) !== 0 || Buffer.compare(b.values, put[name].values) !== 0)
          throw new Error(`${name}: the timed encoding wrote other bytes than the reference`);

      empty();
      t0 = process.hrtime.bigint();
      batchCalls(encodeGeneric(xs));
      record(5, Number(process.hrtime.bigint() - t0));
      full();
      empty();
    }
    for (const r of rows) r.ns.set(size, median(r.trials));
  }

  const cBatch = rows[2].ns;
  const cell = (r: Row, size: number) => {
    const ns = r.ns.get(size) ?? Number.NaN;
    const perEntry = ns / size;
    const rate = size / (ns / 1e9);
    return `${(ns / 1e6).toFixed(0)} ms, ${(perEntry / 1000).toFixed(2)} µs/entry, ${(rate / 1e3).toFixed(0)}k/s`;
  };
  const pct = (r: Row, size: number) =>
    `${((100 * (cBatch.get(size) ?? Number.NaN)) / (r.ns.get(size) ?? Number.NaN)).toFixed(0)} %`;
  console.log(`\n### Map sync throughput: policy maps (groups, exact, LPM), per policy entry\n`);
  console.log(`Machine: ${await machine()}\n`);
  console.log(
    markdownTable(
      ["operation", ...SIZES.flatMap((s) => [`${s.toExponential(0)} entries`, "throughput vs C batch"])],
      rows.map((r) => [r.what, ...SIZES.flatMap((s) => [cell(r, s), pct(r, s)])]),
    ),
  );
  console.log(`\nRecords per size: ${notes.join("; ")}.`);
  const worst = Math.min(...SIZES.map((s) => (cBatch.get(s) ?? 0) / (rows[3].ns.get(s) ?? 1)));
  console.log(
    `\nTarget: TS batch (grouping and encoding included) >= 75 % of the C loop: worst ${(100 * worst).toFixed(0)} % (${worst >= 0.75 ? "met" : "NOT met"}).`,
  );
}

try {
  await main();
} finally {
  cleanup();
}
