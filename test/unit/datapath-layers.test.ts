// The datapath is layered (docs/architecture.md, "Where it lives"): codec/ (layouts and byte codecs, pure)
// under kernel/ (the addon binding, typed maps, programs, links) under writer/ (the map writer and its
// planner) and the top-level flow-events.ts and migrate.ts. A file may import its own layer and the layers
// under it, never one above: codec/ imports nothing else of the datapath, kernel/ only codec/, and
// writer/ neither flow-events.ts nor migrate.ts. The datapath imports none of its users (only the compiler's
// vocabulary), and the CLI's datapath command reaches the pins through datapath/, not the agent. Reads
// every datapath file's import and re-export specifiers, as policy-boundary.test.ts does. No kernel.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { test } from "node:test";
import { sources, specifiers } from "../support/imports.ts";

const root = resolve(import.meta.dirname, "../..");
const datapathDir = join(root, "operator/src/datapath");

// Rank of each part of datapath/: a file may import only parts of rank at most its own.
const RANK: Record<string, number> = { codec: 0, kernel: 1, writer: 2, top: 3 };

// The part of datapath/ a path lies in: its first folder, or "top" for files directly in datapath/.
function partOf(path: string): string {
  const parts = relative(datapathDir, path).split(sep);
  return parts.length === 1 ? "top" : parts[0];
}

test("every datapath file lies in a known layer, and each layer holds files", () => {
  const files = sources(datapathDir);
  const unknown = files.filter((f) => !(partOf(f) in RANK)).map((f) => relative(root, f));
  assert.deepEqual(unknown, [], `datapath/ sub-folders are ${Object.keys(RANK).join(", ")}`);
  for (const part of Object.keys(RANK))
    assert.ok(
      files.some((f) => partOf(f) === part),
      `no file in datapath/${part === "top" ? "" : part}`,
    );
  assert.ok(files.some((f) => f.endsWith(join("kernel", "bpf-addon.ts"))));
  assert.ok(files.some((f) => f.endsWith(join("writer", "sync-plan.ts"))));
});

test("no datapath layer imports one above it (codec < kernel < writer < events, migrate)", () => {
  const offenders: string[] = [];
  for (const file of sources(datapathDir)) {
    const from = partOf(file);
    for (const spec of specifiers(readFileSync(file, "utf8"))) {
      if (!spec.startsWith(".")) continue;
      const target = resolve(dirname(file), spec);
      if (!target.startsWith(datapathDir + sep)) continue;
      const to = partOf(target);
      if (RANK[to] > RANK[from]) offenders.push(`${relative(root, file)} (${from}) imports ${spec} (${to})`);
    }
  }
  assert.deepEqual(offenders, [], "a lower datapath layer must not import a higher one");
});

// Relative import targets of a file that resolve outside dir, as paths relative to operator/src.
function importsOutside(file: string, dir: string): string[] {
  const src = join(root, "operator/src");
  return specifiers(readFileSync(file, "utf8"))
    .filter((spec) => spec.startsWith("."))
    .map((spec) => resolve(dirname(file), spec))
    .filter((target) => !target.startsWith(dir + sep))
    .map((target) => relative(src, target));
}

test("the datapath knows none of its users: outside datapath/ it imports only policy/", () => {
  const offenders: string[] = [];
  for (const file of sources(datapathDir))
    for (const target of importsOutside(file, datapathDir))
      if (!target.startsWith(`policy${sep}`)) offenders.push(`${relative(root, file)} imports ${target}`);
  assert.deepEqual(offenders, [], "datapath/ must not import agent/, cli/, lab/ or any other user");
});

test("the CLI inspects, replaces and removes a datapath through datapath/ alone, not the agent", () => {
  const file = join(root, "operator/src/cli/datapath.ts");
  const agent = importsOutside(file, join(root, "operator/src/cli")).filter((t) =>
    t.startsWith(`agent${sep}`),
  );
  assert.deepEqual(agent, [], "cli/datapath.ts must not import agent/");
  assert.ok(
    importsOutside(file, join(root, "operator/src/cli")).some((t) => t.startsWith(`datapath${sep}`)),
    "the check reads cli/datapath.ts's imports",
  );
});

test("the rank check sees an upward import", () => {
  const file = join(datapathDir, "kernel", "maps.ts");
  const target = resolve(dirname(file), "../writer/sync.ts");
  assert.equal(partOf(file), "kernel");
  assert.equal(partOf(target), "writer");
  assert.ok(RANK[partOf(target)] > RANK[partOf(file)]);
  assert.deepEqual(specifiers('import type {\n  A,\n} from "../writer/a.ts";\n// import "../x.ts";'), [
    "../writer/a.ts",
  ]);
});
