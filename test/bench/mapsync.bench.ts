// Map sync throughput from TypeScript through the addon, single-element vs batch updates, 1e5 and 1e6
// entries, on the datapath's policy map (sl_pol: LPM trie, 20-byte keys, 8-byte values), against a small
// C program (test/bench/native/batch_loop.c, built here with gcc -O2 -lbpf) making the same libbpf calls
// on the same pinned map with the same bytes, in the same run. Every measurement starts from an empty
// map. Target: TS batch >= 75 % of the C loop's throughput.
// Each figure is the median of --trials runs, the C and TS runs interleaved.
// Run as root: node test/bench/mapsync.bench.ts [--sizes 100000,1000000] [--trials 3]
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { policyKeyOf, policyValueOf } from "../../operator/src/datapath/keys.ts";
import { MapNames } from "../../operator/src/datapath/maps.ts";
import { type Datapath, loadDatapath } from "../../operator/src/datapath/programs.ts";
import type { PolicyEntry } from "../../operator/src/policy/mapstate.ts";
import { machine, markdownTable, median, requireRoot } from "./table.ts";

const { values: args } = parseArgs({
  options: { sizes: { type: "string", default: "100000,1000000" }, trials: { type: "string", default: "3" } },
});
const SIZES = (args.sizes ?? "").split(",").map(Number);
const TRIALS = Number(args.trials);

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
interface Item {
  epId: number;
  entry: PolicyEntry;
}
function items(n: number): Item[] {
  const out: Item[] = [];
  for (let i = 0; i < n; i++)
    out.push({
      epId: 1 + Math.floor(i / 10_000),
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

function encode(d: Datapath, xs: readonly Item[]): { keys: Uint8Array; values: Uint8Array } {
  const ks = d.maps.policy.key.size;
  const vs = d.maps.policy.value.size;
  const keys = new Uint8Array(xs.length * ks);
  const values = new Uint8Array(xs.length * vs);
  for (let i = 0; i < xs.length; i++) {
    d.maps.policy.key.encode(policyKeyOf(xs[i].epId, 0, xs[i].entry), keys, i * ks);
    d.maps.policy.value.encode(policyValueOf(xs[i].entry), values, i * vs);
  }
  return { keys, values };
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
  const policy = d.maps.policy;
  const pin = join(pinRoot, MapNames.policy);
  const rows: Row[] = [
    "C: bpf_map_update_elem per entry",
    "TS: TypedMap.set per entry (encode + addon.mapUpdate)",
    "C: one bpf_map_update_batch",
    "TS: encode + one addon.mapUpdateBatch",
    "TS: addon.mapUpdateBatch call alone",
  ].map((what) => ({ what, ns: new Map(), trials: [] }));
  const record = (i: number, _size: number, ns: number) => rows[i].trials.push(ns);

  for (const size of SIZES) {
    const xs = items(size);
    const { keys, values } = encode(d, xs);
    writeFileSync(join(work, "keys"), keys);
    writeFileSync(join(work, "values"), values);
    const empty = () => {
      if (policy.count() === 0) return;
      policy.deleteManyRaw(keys, size);
      if (policy.count() !== 0) throw new Error("policy map not empty after clearing");
    };
    const full = () => {
      const n = policy.count();
      if (n !== size) throw new Error(`policy map holds ${n} entries, expected ${size}`);
    };
    const c = (mode: string) =>
      Number(
        execFileSync(bin, [mode, pin, join(work, "keys"), join(work, "values"), String(size)], {
          encoding: "utf8",
        }).trim(),
      );

    for (const r of rows) r.trials = [];
    for (let trial = 0; trial < TRIALS; trial++) {
      empty();
      record(0, size, c("single"));
      full();

      empty();
      let t0 = process.hrtime.bigint();
      for (const x of xs) policy.set(policyKeyOf(x.epId, 0, x.entry), policyValueOf(x.entry));
      record(1, size, Number(process.hrtime.bigint() - t0));
      full();

      empty();
      record(2, size, c("batch"));
      full();

      empty();
      t0 = process.hrtime.bigint();
      const enc = encode(d, xs);
      const t1 = process.hrtime.bigint();
      policy.setManyRaw(enc.keys, enc.values, size);
      const t2 = process.hrtime.bigint();
      record(3, size, Number(t2 - t0));
      record(4, size, Number(t2 - t1));
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
  console.log(`\n### Map sync throughput: policy map (LPM trie, ${policy.key.size}-byte keys)\n`);
  console.log(`Machine: ${await machine()}\n`);
  console.log(
    markdownTable(
      ["operation", ...SIZES.flatMap((s) => [`${s.toExponential(0)} entries`, "throughput vs C batch"])],
      rows.map((r) => [r.what, ...SIZES.flatMap((s) => [cell(r, s), pct(r, s)])]),
    ),
  );
  const worst = Math.min(...SIZES.map((s) => (cBatch.get(s) ?? 0) / (rows[3].ns.get(s) ?? 1)));
  console.log(
    `\nTarget: TS batch (encode included) >= 75 % of the C loop: worst ${(100 * worst).toFixed(0)} % (${worst >= 0.75 ? "met" : "NOT met"}).`,
  );
}

try {
  await main();
} finally {
  cleanup();
}
