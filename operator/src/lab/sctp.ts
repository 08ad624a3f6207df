// Whether the kernel can carry SCTP: the protocol is listed once its module is loaded (or built in).
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

let cached: boolean | undefined;

export function sctpAvailable(): boolean {
  if (cached !== undefined) return cached;
  const listed = () => {
    try {
      return /^SCTP\b/m.test(readFileSync("/proc/net/protocols", "utf8"));
    } catch {
      return false;
    }
  };
  if (!listed()) spawnSync("modprobe", ["sctp"], { stdio: "ignore" });
  cached = listed();
  return cached;
}
