// The manifest inputs of validate, matrix and plan: files, directories, or `-` for stdin (a pipe from
// kubectl or a generator). Paths stay as the user gave them, so messages point where they typed.
import { existsSync, readFileSync } from "node:fs";
import {
  type LoadedDocument,
  type LoadError,
  loadManifests,
  parseManifests,
  yamlFiles,
} from "../manifests/load.ts";
import { UsageError } from "./usage.ts";

/** What messages call the documents read from stdin. */
export const STDIN_NAME = "<stdin>";

// Stdin can be read once: a command reads it on its first `-` and refuses a second one.
let stdinRead = false;

export interface Inputs {
  documents: LoadedDocument[];
  errors: LoadError[];
  /** How many files were read (stdin counts as one). */
  files: number;
}

/** Fails on a missing path before anything is read: `-f nope.yaml: no such file or directory`. */
export function checkInputs(flag: string | undefined, paths: readonly string[]): void {
  if (paths.length === 0)
    throw new UsageError(
      `${flag ? `${flag}: ` : ""}at least one file or directory (or - for stdin) is needed`,
    );
  if (paths.filter((p) => p === "-").length > 1)
    throw new UsageError(`${flag ? `${flag}: ` : ""}- (stdin) can be given once`);
  for (const p of paths)
    if (p !== "-" && !existsSync(p))
      throw new Error(`${flag ? `${flag} ` : ""}${p}: no such file or directory`);
}

export function loadInputs(paths: readonly string[]): Inputs {
  const documents: LoadedDocument[] = [];
  const errors: LoadError[] = [];
  let files = 0;
  for (const p of paths) {
    if (p === "-") {
      if (stdinRead) throw new UsageError("- (stdin) can be read once: give it to one flag only");
      stdinRead = true;
      const r = parseManifests(readFileSync(0, "utf8"), STDIN_NAME);
      documents.push(...r.documents);
      errors.push(...r.errors);
      files++;
      continue;
    }
    const r = loadManifests([p]);
    documents.push(...r.documents);
    errors.push(...r.errors);
    files += yamlFiles([p]).length;
  }
  return { documents, errors, files };
}
