import { setTimeout as sleep } from "node:timers/promises";
import type { KubeConfig } from "@kubernetes/client-node";
import pino from "pino";
import type { Logger } from "../../operator/src/observe/log.ts";
import { type KubeClients, loadKubeConfig, makeClients } from "../../operator/src/kube/client.ts";
import { Operator } from "../../operator/src/controllers/run.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";
import { applyCrds, kubectlOk, waitCrdsEstablished } from "../../operator/src/lab/cluster-setup.ts";

export { applyCrds, kubectlOk, waitCrdsEstablished };
export { repoRoot } from "../support/apiserver.ts";

export interface Cluster {
  api: ApiServer;
  kc: KubeConfig;
  clients: KubeClients;
  stop(): Promise<void>;
}

export async function startCluster(crdFiles?: readonly string[]): Promise<Cluster> {
  const api = await startApiServer();
  try {
    await applyCrds(api.kubeconfigPath, crdFiles);
  } catch (err) {
    await api.stop();
    throw err;
  }
  const kc = loadKubeConfig(api.kubeconfigPath);
  return { api, kc, clients: makeClients(kc), stop: () => api.stop() };
}

/** Polls until fn returns a truthy value; fails with `what` after timeoutMs. */
export async function waitFor<T>(
  what: string,
  fn: () => T | Promise<T>,
  timeoutMs = 20_000,
  everyMs = 25,
): Promise<Exclude<T, undefined | null | false>> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as Exclude<T, undefined | null | false>;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`,
      );
    }
    await sleep(everyMs);
  }
}

export async function createNamespace(
  clients: KubeClients,
  name: string,
  labels: Record<string, string> = {},
) {
  await clients.core.createNamespace({ body: { metadata: { name, labels } } });
}

export function podBody(namespace: string, name: string, labels: Record<string, string>, nodeName?: string) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace, labels },
    spec: { nodeName, containers: [{ name: "c", image: "registry.invalid/none:1" }] },
  };
}

export async function createPod(
  clients: KubeClients,
  namespace: string,
  name: string,
  labels: Record<string, string>,
  nodeName?: string,
): Promise<void> {
  await clients.core.createNamespacedPod({ namespace, body: podBody(namespace, name, labels, nodeName) });
}

export interface IdentityItem {
  metadata: { name: string; labels?: Record<string, string>; resourceVersion?: string };
  spec: { labels: Record<string, string> };
}

export async function listIdentities(clients: KubeClients): Promise<IdentityItem[]> {
  const list = (await clients.custom.listClusterCustomObject({
    group: "sluice.dev",
    version: "v1alpha1",
    plural: "securityidentities",
  })) as { items: IdentityItem[] };
  return list.items;
}

/** Runs tasks with at most `limit` in flight. */
export async function pool<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * A debug-level logger whose JSON lines go to `write` (a test's buffer, or stderr when a test runs
 * with SLUICE_TEST_LOG set); the operator's own format and fields, minus the terminal.
 */
export function testLogger(write: (line: string) => void): Logger {
  return pino(
    {
      level: "debug",
      base: { component: "operator" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    { write: (s: string) => write(s.trimEnd()) },
  );
}

/**
 * A leading operator with short test timings (lease 3 s, status debounce 20 ms); stop() it after.
 * Returns once it leads.
 */
export async function startTestOperator(
  clients: KubeClients,
  id: string,
  extra: { statusDebounceMs?: number; log?: (msg: string) => void } = {},
): Promise<Operator> {
  const op = new Operator({
    clients,
    leaseNamespace: "default",
    id,
    identityGcGraceMs: 60_000,
    leaseDurationMs: 3000,
    renewDeadlineMs: 2000,
    retryPeriodMs: 300,
    statusDebounceMs: extra.statusDebounceMs ?? 20,
    log: extra.log ? testLogger(extra.log) : undefined,
  });
  op.start();
  try {
    await waitFor(`${id} leads`, () => op.isLeader());
  } catch (err) {
    await op.stop();
    throw err;
  }
  return op;
}
