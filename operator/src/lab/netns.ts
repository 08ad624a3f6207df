// Creates and removes the lab's network namespaces from a plan. Every interface is created with
// `ip -n` directly inside its namespace, so the root namespace is never touched.
import { readdirSync } from "node:fs";
import { ipBatch, mapLimit, run } from "./exec.ts";
import { allNetns, type LabPlan } from "./netns-plan.ts";

const PARALLEL = 8;

export async function createNetns(plan: LabPlan, created: (netns: string) => void): Promise<void> {
  // Namespaces one by one so that every one that exists has been reported for cleanup.
  for (const ns of allNetns(plan)) {
    await run("ip", ["netns", "add", ns]);
    created(ns);
  }
}

export async function wireNetns(plan: LabPlan): Promise<void> {
  // Links first (a veth pair spans two namespaces), then addresses, routes and neighbours.
  await mapLimit([...plan.links], PARALLEL, ([ns, lines]) => ipBatch(ns, lines));
  await mapLimit([...plan.sysctls], PARALLEL, ([ns, values]) => {
    const script = Object.entries(values)
      .map(([k, v]) => `echo ${v} > /proc/sys/${k}`)
      .join(" && ");
    return run("nsenter", [`--net=/run/netns/${ns}`, "sh", "-c", script]);
  });
  // Nodes' host-side links must exist before pods route to them; config batches are independent.
  await mapLimit([...plan.config], PARALLEL, ([ns, lines]) => ipBatch(ns, lines));
}

// Deletes namespaces; deleting a namespace deletes its interfaces. Errors are collected, not thrown
// at the first, so one failure does not leave the rest behind.
export async function deleteNetns(names: readonly string[]): Promise<string[]> {
  const errors: string[] = [];
  await mapLimit(names, PARALLEL, async (ns) => {
    try {
      await run("ip", ["netns", "delete", ns]);
    } catch (err) {
      if (existingNetns().includes(ns)) errors.push((err as Error).message);
    }
  });
  return errors;
}

export function existingNetns(): string[] {
  try {
    return readdirSync("/run/netns");
  } catch {
    return [];
  }
}
