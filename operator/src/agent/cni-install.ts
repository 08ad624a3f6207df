// Installs the chained CNI plugin (sluice-cni, built from cni/) into the node's CNI binary directory
// when the agent starts, as Cilium's agent installs its plugin: the image carries the binary, the
// chart mounts the host's directory. Written beside the target and renamed over it, so a runtime that
// executes the plugin meanwhile runs either the old binary or the new one, never half of one.
import { chmod, copyFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";

/** Where the image puts the plugin (scripts/image-build.sh). */
export const IMAGE_CNI_PLUGIN = "/opt/sluice/cni/sluice-cni";

export async function installCniPlugin(
  binDir: string,
  source = process.env.SLUICE_CNI_PLUGIN ?? IMAGE_CNI_PLUGIN,
): Promise<string> {
  const target = join(binDir, "sluice-cni");
  const tmp = join(binDir, `.sluice-cni.${process.pid}`);
  try {
    await copyFile(source, tmp);
    await chmod(tmp, 0o755);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new Error(`installing the CNI plugin ${source} into ${binDir}: ${(err as Error).message}`);
  }
  return target;
}
