// The sluice image's environment besides PATH (image/env, also read by scripts/image-build.sh), for
// the benches that run the daemons on this machine as the image runs them, and for the image test.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../../operator/src/datapath/kernel/bpf-addon.ts";

/** NAME=value lines (image/env's, or an image config's Env) as an environment; `source` names them in errors. */
export function parseEnv(lines: readonly string[], source: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of lines) {
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`${source}: not a NAME=value line: ${line}`);
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return env;
}

/** image/env, its comments and blank lines left out. */
export function imageEnv(): Record<string, string> {
  const lines = readFileSync(join(repoRoot(), "image/env"), "utf8").split("\n");
  return parseEnv(
    lines.filter((l) => l !== "" && !l.startsWith("#")),
    "image/env",
  );
}

/** The libraries image/env preloads. */
export function preloaded(env: Record<string, string>): string[] {
  return (env.LD_PRELOAD ?? "").split(/[: ]+/).filter(Boolean);
}

/**
 * image/env for daemons run on this machine: a preloaded library it lacks is an error (glibc's loader
 * would only warn and run the daemon with its own malloc, measuring something else).
 */
export function hostImageEnv(): Record<string, string> {
  const env = imageEnv();
  for (const lib of preloaded(env))
    if (!existsSync(lib)) throw new Error(`image/env preloads ${lib}, missing here: run scripts/setup.sh`);
  return env;
}
