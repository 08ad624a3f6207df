// The lab's input files (or directories of them) as plain objects, through the one manifest loader.
import { loadManifests } from "../manifests/load.ts";

export function loadObjects(paths: readonly string[]): unknown[] {
  const { documents, errors } = loadManifests(paths);
  if (errors.length > 0) throw new Error(errors.map((e) => `${e.path}:${e.line}: ${e.message}`).join("\n"));
  return documents.map((d) => d.object);
}
