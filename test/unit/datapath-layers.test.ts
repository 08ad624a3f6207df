// The datapath is layered (docs/architecture.md, "Where it lives"): codec/ (layouts and byte codecs, pure)
// under kernel/ (the addon binding, typed maps, programs, links) under writer/ (the map writer and its
// planner) and the top-level events.ts and migrate.ts. A file may import its own layer and the layers
// under it, never one above: codec/ imports nothing else of the datapath, kernel/ only codec/, and
// writer/ neither events.ts nor migrate.ts. Reads every datapath file's import and re-export
// specifiers, as policy-boundary.test.ts does. No kernel.
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
