// What a TypeScript file imports, read as text: the layering tests (policy-boundary, datapath-layers)
// check folders against each other with it. A regex over the source, not a parser: enough for this
// repository's import style, and its own test says what it sees.
import { readdirSync } from "node:fs";
import { join } from "node:path";

/** Every .ts file below dir. */
export function sources(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => join(dir, f));
}

/**
 * Module specifiers of static imports and re-exports (`import ... from "x"`, `import "x"`,
 * `export ... from "x"`) and of dynamic imports (`import("x")`), comments dropped.
 */
export function specifiers(src: string): string[] {
  const code = src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const out: string[] = [];
  for (const m of code.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*["']([^"']+)["']/g)) out.push(m[1]);
  return out;
}
