// What the integration suites and benchmarks set up in a real API server: Sluice's CRDs and a lab's
// topology (Nodes, Namespaces, Pods with their IPs), through kubectl.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { apiRegistration } from "../../operator/src/lab/api-registration.ts";
import { kubectl, repoRoot } from "./apiserver.ts";

export async function kubectlOk(args: string[], kubeconfig: string, input?: string): Promise<string> {
  const r = await kubectl(args, kubeconfig, { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/** Applies CRDs from crds/ (default: all of them) and waits until they are served. */
export async function applyCrds(kubeconfig: string, files?: readonly string[]): Promise<void> {
  const dir = join(repoRoot, "crds");
  const chosen = files ?? readdirSync(dir).filter((f) => f.endsWith(".yaml"));
  for (const f of chosen) await kubectlOk(["apply", "--server-side", "-f", join(dir, f)], kubeconfig);
  await kubectlOk(["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"], kubeconfig);
}

/** Registers a lab topology's objects as a kubelet-less cluster would hold them. */
export async function registerLabCluster(kubeconfig: string, objects: readonly unknown[]): Promise<void> {
  const reg = apiRegistration(objects);
  await kubectlOk(
    ["apply", "-f", "-"],
    kubeconfig,
    reg.objects.map((d) => JSON.stringify(d)).join("\n---\n"),
  );
  for (const p of reg.podStatuses)
    await kubectlOk(
      [
        "patch",
        "pod",
        p.name,
        "-n",
        p.namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        JSON.stringify({ status: p.status }),
      ],
      kubeconfig,
    );
}
