// The compiler knows no bytes: nothing under operator/src/policy/ may import from operator/src/datapath/
// (docs/architecture.md, "The compiler knows no bytes"). The datapath imports the compiler's vocabulary,
// never the other way. Reads every policy/ file's import and re-export specifiers. No kernel.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { test } from "node:test";
import { sources, specifiers } from "../support/imports.ts";

const root = resolve(import.meta.dirname, "../..");
const policyDir = join(root, "operator/src/policy");
const datapathDir = join(root, "operator/src/datapath");

test("the policy/ file list and the import reader see what they should", () => {
  const files = sources(policyDir);
  assert.ok(files.some((f) => f.endsWith("lookup.ts")) && files.some((f) => f.endsWith("mapstate.ts")));
  assert.deepEqual(
    specifiers(
      'import { a } from "./a.ts";\nimport type {\n  B,\n} from "../b.ts";\nexport * from "./c.ts";\nimport "./d.ts";\nconst e = await import("./e.ts");',
    ),
    ["./a.ts", "../b.ts", "./c.ts", "./d.ts", "./e.ts"],
  );
});

test("nothing under operator/src/policy/ imports operator/src/datapath/", () => {
  const offenders: string[] = [];
  for (const file of sources(policyDir)) {
    for (const spec of specifiers(readFileSync(file, "utf8"))) {
      if (!spec.startsWith(".")) continue;
      const target = resolve(dirname(file), spec);
      if (target === datapathDir || target.startsWith(datapathDir + sep))
        offenders.push(`${relative(root, file)} imports ${spec}`);
    }
  }
  assert.deepEqual(offenders, [], "the compiler must not know the datapath (move the code into datapath/)");
});
