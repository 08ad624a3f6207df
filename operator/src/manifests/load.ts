// Loads YAML manifests from files and directories, one entry per document, with the line each
// document starts on so messages can point at it.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { LineCounter, parseAllDocuments } from "yaml";

export interface LoadedDocument {
  path: string;
  line: number;
  object: unknown;
}

export interface LoadError {
  path: string;
  line: number;
  message: string;
}

export function yamlFiles(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    if (statSync(p).isDirectory()) {
      const children = readdirSync(p)
        .sort()
        .map((c) => join(p, c));
      out.push(...yamlFiles(children.filter((c) => statSync(c).isDirectory() || /\.(ya?ml|json)$/.test(c))));
    } else out.push(p);
  }
  return out;
}

export function parseManifests(
  text: string,
  path: string,
): { documents: LoadedDocument[]; errors: LoadError[] } {
  const lc = new LineCounter();
  const documents: LoadedDocument[] = [];
  const errors: LoadError[] = [];
  for (const doc of parseAllDocuments(text, { lineCounter: lc, prettyErrors: false })) {
    const start = doc.contents?.range?.[0] ?? doc.range[0];
    const line = lc.linePos(start).line;
    for (const e of doc.errors) errors.push({ path, line: lc.linePos(e.pos[0]).line, message: e.message });
    if (doc.errors.length > 0) continue;
    const object = doc.toJS();
    if (object === null || object === undefined) continue;
    // Flatten List kinds, keeping each item's own line.
    const items = doc.get("items", true) as
      | { items?: Array<{ range?: [number, number, number] }> }
      | undefined;
    if (
      typeof object === "object" &&
      Array.isArray((object as { items?: unknown }).items) &&
      String((object as { kind?: unknown }).kind ?? "").endsWith("List")
    ) {
      (object as { items: unknown[] }).items.forEach((item, i) => {
        const r = items?.items?.[i]?.range;
        documents.push({ path, line: r ? lc.linePos(r[0]).line : line, object: item });
      });
      continue;
    }
    documents.push({ path, line, object });
  }
  return { documents, errors };
}

export function loadManifests(paths: readonly string[]): {
  documents: LoadedDocument[];
  errors: LoadError[];
} {
  const documents: LoadedDocument[] = [];
  const errors: LoadError[] = [];
  for (const f of yamlFiles(paths)) {
    let text: string;
    try {
      text = readFileSync(f, "utf8");
    } catch (e) {
      errors.push({ path: f, line: 0, message: (e as Error).message });
      continue;
    }
    const r = parseManifests(text, f);
    documents.push(...r.documents);
    errors.push(...r.errors);
  }
  return { documents, errors };
}

/** The documents of files or directories as plain objects; any load error throws, naming file and line. */
export function loadObjects(paths: readonly string[]): unknown[] {
  const { documents, errors } = loadManifests(paths);
  if (errors.length > 0) throw new Error(errors.map((e) => `${e.path}:${e.line}: ${e.message}`).join("\n"));
  return documents.map((d) => d.object);
}
