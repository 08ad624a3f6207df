// What a lab cluster needs in its API server before the operator and agents start: Sluice's CRDs and
// the topology's Nodes, Namespaces and Pods (with the IPs a kubelet would report), through the
// kubectl that scripts/setup.sh installs in .tooling/bin. Shared by `sluice lab up`, the integration
// tests and the benchmarks.
import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { mapLimit } from "./exec.ts";
import { apiRegistration } from "./api-registration.ts";
import { Lab, type LabOptions } from "./lab.ts";
import { topologyFromObjects } from "./topology.ts";
import { REPO_ROOT } from "./local-apiserver.ts";

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface KubectlOptions {
  input?: string;
  timeoutMs?: number;
  /** kubectl's discovery cache (--cache-dir). Default: beside a kubeconfig in a sluice-apiserver-* dir. */
  cacheDir?: string;
}

export const KUBECTL = join(REPO_ROOT, ".tooling/bin/kubectl");

/** Runs .tooling/bin/kubectl against the given kubeconfig. */
export function kubectl(
  args: string[],
  kubeconfig: string,
  opts: KubectlOptions = {},
): Promise<KubectlResult> {
  if (!existsSync(KUBECTL)) {
    return Promise.reject(new Error(`${KUBECTL} is missing: run 'bash scripts/setup.sh' first`));
  }
  // kubectl caches discovery per host:port under ~/.kube/cache; ports are reused across runs, so a
  // server we started gets a cache of its own, removed with it.
  const cacheDir =
    opts.cacheDir ??
    (basename(dirname(kubeconfig)).startsWith("sluice-apiserver-")
      ? join(dirname(kubeconfig), "kubectl-cache")
      : undefined);
  const cacheArgs = cacheDir ? ["--cache-dir", cacheDir] : [];
  return new Promise((resolveRun, reject) => {
    const child = execFile(
      KUBECTL,
      ["--kubeconfig", kubeconfig, ...cacheArgs, ...args],
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== "number") {
          reject(new Error(`kubectl ${args.join(" ")}: ${err.message}`));
          return;
        }
        resolveRun({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

export async function kubectlOk(
  args: string[],
  kubeconfig: string,
  input?: string,
  opts: Omit<KubectlOptions, "input"> = {},
): Promise<string> {
  const r = await kubectl(args, kubeconfig, { ...opts, input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/** Applies CRDs from crds/ (default: all of them) and waits until they are served. */
export async function applyCrds(
  kubeconfig: string,
  files?: readonly string[],
  opts: Omit<KubectlOptions, "input"> = {},
): Promise<void> {
  const dir = join(REPO_ROOT, "crds");
  const chosen = files ?? readdirSync(dir).filter((f) => f.endsWith(".yaml"));
  await kubectlOk(
    ["apply", "--server-side", ...chosen.flatMap((f) => ["-f", join(dir, f)])],
    kubeconfig,
    undefined,
    opts,
  );
  await waitCrdsEstablished(kubeconfig, ["--all"], opts);
}

/**
 * Waits until the CRDs named (or every CRD: `--all`) are Established. kubectl wait fails at
 * once, instead of waiting, on a CRD the API server has not yet given any condition (".status.conditions
 * accessor error: <nil>"), which a CRD just applied can be for a moment: that answer is asked again.
 */
export async function waitCrdsEstablished(
  kubeconfig: string,
  targets: readonly string[],
  opts: Omit<KubectlOptions, "input"> = {},
  timeoutMs = 60_000,
): Promise<void> {
  const args = [
    "wait",
    "--for=condition=Established",
    `--timeout=${Math.ceil(timeoutMs / 1000)}s`,
    "crd",
    ...targets,
  ];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await kubectl(args, kubeconfig, opts);
    if (r.code === 0) return;
    if (!r.stderr.includes(".status.conditions accessor error") || Date.now() > deadline)
      throw new Error(`kubectl ${args.join(" ")} failed: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** Registers a lab topology's objects as a kubelet-less cluster would hold them. */
export async function registerLabCluster(
  kubeconfig: string,
  objects: readonly unknown[],
  opts: Omit<KubectlOptions, "input"> = {},
): Promise<void> {
  const reg = apiRegistration(objects);
  await kubectlOk(
    ["apply", "-f", "-"],
    kubeconfig,
    reg.objects.map((d) => JSON.stringify(d)).join("\n---\n"),
    opts,
  );
  // One kubectl process per status (kubectl patches one object a call): a few at a time.
  const patches: Array<[string[], Record<string, unknown>]> = [
    ...reg.nodeStatuses.map((n): [string[], Record<string, unknown>] => [["node", n.name], n.status]),
    ...reg.podStatuses.map((p): [string[], Record<string, unknown>] => [
      ["pod", p.name, "-n", p.namespace],
      p.status,
    ]),
  ];
  await mapLimit(patches, 4, ([object, status]) =>
    kubectlOk(
      ["patch", ...object, "--subresource=status", "--type=merge", "-p", JSON.stringify({ status })],
      kubeconfig,
      undefined,
      opts,
    ),
  );
}

/**
 * A lab whose topology is registered in the API server, with the server bridged into the nodes'
 * namespaces so agents there reach it: what `sluice lab up`, the agent's integration tests and the
 * apply benchmark build before starting agents. On failure the lab is removed again.
 */
export async function createLabCluster(
  api: { kubeconfigPath: string; server: string },
  objects: readonly unknown[],
  labOptions: LabOptions = {},
  opts: Omit<KubectlOptions, "input"> = {},
): Promise<Lab> {
  await applyCrds(api.kubeconfigPath, undefined, opts);
  const lab = await Lab.create(topologyFromObjects(objects), labOptions);
  try {
    await registerLabCluster(api.kubeconfigPath, objects, opts);
    await lab.connectApiServer(api.server);
  } catch (err) {
    await lab.destroy();
    throw err;
  }
  return lab;
}
