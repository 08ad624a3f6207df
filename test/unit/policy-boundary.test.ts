// The compiler knows no bytes: nothing under operator/src/policy/ may import from operator/src/datapath/
// (docs/architecture.md, "The compiler knows no bytes"). The datapath imports the compiler's vocabulary,
// never the other way. Reads every policy/ file's import and re-export specifiers. No kernel.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { test } from "node:test";

const root = resolve(import.meta.dirname, "../..");
const policyDir = join(root, "operator/src/policy");
const datapathDir = join(root, "operator/src/datapath");

function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => join(dir, f));
}

// Module specifiers of static imports and re-exports (`import ... from "x"`, `import "x"`,
// `export ... from "x"`) and of dynamic imports (`import("x")`).
function specifiers(src: string): string[] {
  const code = src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const out: string[] = [];
  for (const m of code.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*["']([^"']+)["']/g)) out.push(m[1]);
  return out;
}

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
