// Runs the scale rig (rig.ts) at each factor of SCALE_FACTORS (default "0.1,1": a tenth of issue
// 14's cluster as the baseline, then the full 1,000 nodes / 50,000 pods) and prints the tables.
// Needs root (the agent's network namespace and BPF maps). Also the entry of `npm run bench`
// (test/bench/scale.bench.ts). Environment: SCALE_FACTORS, SCALE_CHURN_SECONDS (default 30),
// SCALE_CHURN_RATE (operations/s, default 30), SCALE_STEADY_SECONDS (default 20), SCALE_BURST
// (new label sets in the burst at full scale, default 2000, scaled down with the factor),
// SCALE_ENTRY (bundle, the default: the esbuild bundle the image runs, built here by
// scripts/bundle.mjs; or sources: cli/main.ts as the tests run it), SCALE_MAIN (the `sluice` entry
// point of another build, e.g. an earlier commit's bundle: `node scripts/bundle.mjs --src <its
// checkout> --outdir <dir> --root .`, then SCALE_MAIN=<dir>/main.mjs), SCALE_NODE_OPTIONS (the
// daemons' NODE_OPTIONS; default the chart's agent.nodeOptions, as a pod runs them; "" for Node's
// defaults), SCALE_IMAGE_ENV (1, the default: the daemons get the image's environment, image/env, so
// jemalloc is their malloc as in a pod; 0: glibc's, for a before/after).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registerCleanup } from "../../operator/src/lab/cleanup.ts";
import { REPO_ROOT } from "../../operator/src/lab/local-apiserver.ts";
import { machine } from "../bench/table.ts";
import { hostImageEnv } from "../support/image-env.ts";
import { scaleTables } from "./report.ts";
import { type RigResult, runRig } from "./rig.ts";
import { scaled } from "./shape.ts";
import { parse } from "yaml";

// The V8 flags the chart gives the daemons (values.yaml agent.nodeOptions; the operator's are the
// same), so the rig measures the memory a pod would have.
function chartNodeOptions(): string {
  const values = parse(readFileSync(join(REPO_ROOT, "charts/sluice/values.yaml"), "utf8")) as {
    agent?: { nodeOptions?: string };
  };
  return values.agent?.nodeOptions ?? "";
}

export async function runScale(): Promise<void> {
  const factors = (process.env.SCALE_FACTORS ?? "0.1,1").split(",").map(Number);
  const results: RigResult[] = [];
  const labels: string[] = [];
  const num = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
  const entry = process.env.SCALE_MAIN
    ? `entry point ${process.env.SCALE_MAIN}`
    : (process.env.SCALE_ENTRY ?? "bundle");
  // Inherited by the daemons the rig spawns.
  const nodeOptions = process.env.SCALE_NODE_OPTIONS ?? chartNodeOptions();
  if (nodeOptions) process.env.NODE_OPTIONS = nodeOptions;
  else delete process.env.NODE_OPTIONS;
  const env = process.env.SCALE_IMAGE_ENV === "0" ? {} : hostImageEnv();
  const work = mkdtempSync(join(tmpdir(), "sluice-scale-bundle-"));
  const unregister = registerCleanup(async () => rmSync(work, { recursive: true, force: true }));
  let main = process.env.SCALE_MAIN;
  try {
    if (main) {
      // Another build's entry point (a bundle of an earlier commit: the "before" of a before/after).
    } else if (entry === "bundle") {
      // Inside the try: a bundle that fails to build (a NODE_OPTIONS Node refuses) leaves no directory.
      execFileSync(process.execPath, ["scripts/bundle.mjs", "--outdir", work], {
        cwd: REPO_ROOT,
        stdio: "pipe",
      });
      main = join(work, "main.mjs");
    } else if (entry !== "sources") throw new Error(`SCALE_ENTRY: bundle or sources, not ${entry}`);
    for (const f of factors) {
      const shape = scaled(f);
      console.error(`# scale ${f}: ${JSON.stringify(shape)}`);
      results.push(
        await runRig({
          shape,
          burst: Math.max(20, Math.round(num("SCALE_BURST", 2000) * f)),
          churnSeconds: num("SCALE_CHURN_SECONDS", 30),
          churnPerSecond: num("SCALE_CHURN_RATE", 30),
          steadySeconds: num("SCALE_STEADY_SECONDS", 20),
          gcGraceSeconds: 10,
          main,
          env,
          log: (l) => console.error(`  ${l}`),
        }),
      );
      labels.push(f === 1 ? "full" : `×${f}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
    unregister();
  }
  console.log(
    `Scale rig on ${await machine()}; daemons run from the ${entry}, NODE_OPTIONS=${JSON.stringify(nodeOptions)}, ` +
      `malloc: ${env.LD_PRELOAD ? `${env.LD_PRELOAD} (image/env)` : "glibc's"}\n`,
  );
  console.log(scaleTables(labels, results));
}

if (import.meta.main) {
  if (process.getuid?.() !== 0) {
    console.error("scale rig: needs root (BPF, network namespaces)");
    process.exit(1);
  }
  runScale().then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
