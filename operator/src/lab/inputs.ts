// Reads the lab's input files (or directories of them) into plain objects. Parsing is the manifests
// module's job once it lands; this only finds the files and hands their documents over.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";

export function manifestFiles(paths: readonly string[]): string[] {
  const out: string[] = [];
  const visit = (p: string, top: boolean) => {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(p);
    } catch {
      throw new Error(`${p}: no such file or directory`);
    }
    if (st.isDirectory()) {
      for (const e of readdirSync(p).sort()) visit(join(p, e), false);
    } else if (top || /\.(ya?ml|json)$/.test(p)) out.push(p);
  };
  for (const p of paths) visit(p, true);
  return out;
}

export function loadObjects(paths: readonly string[]): unknown[] {
  const objects: unknown[] = [];
  for (const file of manifestFiles(paths)) {
    for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
      const o: unknown = doc.toJS();
      if (o !== null && o !== undefined) objects.push(o);
    }
  }
  return objects;
}
