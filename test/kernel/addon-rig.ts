// Shared setup of the addon's kernel tests: the test object, a unique bpffs root, a unique interface.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { loadAddon, repoRoot } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import { ensureBpffs } from "../../operator/src/datapath/kernel/bpffs.ts";

export const testObject = join(repoRoot(), "bpf/build/testdata/addon_test.bpf.o");
export const badObject = join(repoRoot(), "bpf/build/testdata/addon_bad.bpf.o");

let seq = 0;
export function uniqueName(prefix: string): string {
  return `${prefix}${process.pid.toString(36)}${(seq++).toString(36)}`;
}

export function pinRoot(): { path: string; remove(): void } {
  ensureBpffs();
  const path = join("/sys/fs/bpf", uniqueName("sluice-test-"));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

// A veth pair (this kernel has no dummy driver); the test uses the first end.
export function testInterface(): { name: string; remove(): void } {
  // IFNAMSIZ: at most 15 characters.
  const name = uniqueName("slt").slice(0, 13);
  execFileSync("ip", ["link", "add", name, "type", "veth", "peer", "name", `${name}p`]);
  return {
    name,
    remove: () => {
      try {
        execFileSync("ip", ["link", "del", name], { stdio: "ignore" });
      } catch {
        // already gone
      }
    },
  };
}

export function addon() {
  return loadAddon();
}
