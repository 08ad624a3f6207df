// Pieces of the real-cluster upgrade test (test/cluster/upgrade.test.ts): the image of the previous
// datapath layout's last commit built from git history, the lab's reply-only UDP stream run inside
// pods with `kubectl exec`, and what the test reads back (pods, pins).
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join, relative } from "node:path";
import { run } from "../../../operator/src/lab/exec.ts";
import { REPO_ROOT } from "../../../operator/src/lab/local-apiserver.ts";
import { previousLayoutCommitTime, previousLayoutTree } from "../../support/previous-layout.ts";
import type { Cluster, ImageRef } from "./cluster.ts";
import type { LivePod } from "./workloads.ts";

export const RELEASE_NS = "sluice-system";
const NODE_IN_IMAGE = ["/opt/sluice/node/bin/node", "--disable-warning=ExperimentalWarning"];

/**
 * `scripts/image-build.sh --tree <previous layout's commit> --tag <tag> --out <out>`: the images of the
 * previous layout's last commit (its app layer; Node and the Debian layer are this checkout's), with
 * the commit's time as SOURCE_DATE_EPOCH. The tree is extracted to a temporary directory and removed
 * again.
 */
export async function buildPreviousLayoutImage(out: string, tag: string): Promise<ImageRef[]> {
  const tree = previousLayoutTree();
  try {
    const r = await run("env", [
      `SOURCE_DATE_EPOCH=${previousLayoutCommitTime()}`,
      "bash",
      join(REPO_ROOT, "scripts/image-build.sh"),
      "--tree",
      tree,
      "--tag",
      tag,
      "--out",
      out,
    ]);
    return r.stdout
      .split("\n")
      .filter((l) => l.trim().startsWith("{"))
      .map((l) => JSON.parse(l) as ImageRef);
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
}

export interface PodFacts {
  namespace: string;
  name: string;
  uid: string;
  restarts: number;
  ready: boolean;
  image: string;
  imageID: string;
}

interface PodJson {
  metadata: { name: string; namespace: string; uid: string; deletionTimestamp?: string };
  spec: { containers: { image: string }[] };
  status: { containerStatuses?: { ready: boolean; restartCount: number; imageID: string }[] };
}

/** Pods of a namespace (optionally by label selector), sorted by name; terminating ones left out. */
export async function podFacts(cluster: Cluster, namespace: string, selector?: string): Promise<PodFacts[]> {
  const list = JSON.parse(
    await cluster.kubectl([
      "get",
      "pods",
      "-n",
      namespace,
      ...(selector ? ["-l", selector] : []),
      "-o",
      "json",
    ]),
  ) as { items: PodJson[] };
  return list.items
    .filter((p) => !p.metadata.deletionTimestamp)
    .map((p) => {
      const cs = p.status.containerStatuses ?? [];
      return {
        namespace: p.metadata.namespace,
        name: p.metadata.name,
        uid: p.metadata.uid,
        restarts: cs.reduce((n, c) => n + c.restartCount, 0),
        ready: cs.length > 0 && cs.every((c) => c.ready),
        image: p.spec.containers[0]?.image ?? "",
        imageID: cs[0]?.imageID ?? "",
      };
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

export const agentPods = (cluster: Cluster) =>
  podFacts(cluster, RELEASE_NS, "app.kubernetes.io/component=agent");

/** The agent's pin directory on the host: the chart's bpffsRoot inside the bpffs host path. */
export function hostPinRoot(chartValues: Record<string, string>): string {
  return join(
    chartValues["agent.bpffs.hostPath"],
    relative("/sys/fs/bpf", chartValues["agent.bpffsRoot"] ?? "/sys/fs/bpf/sluice"),
  );
}

export function pins(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

const UDP_PUSH = readFileSync(join(REPO_ROOT, "test/e2e/udp-push.ts"), "utf8");

export interface PushResult {
  sent: number;
  received: number;
  /** Datagrams the client's network namespace dropped at a full socket buffer (not the datapath's). */
  overflowed: number;
  /** Wall clock (ms) of the push's first datagram: pods and the test share the host's clock. */
  startedAt: number;
}

/**
 * The lab's reply-only stream (test/e2e/udp-push.ts) between two pods: the image has Node but not the
 * test's script, so the script goes in on stdin. The server pushes `rate` datagrams a second for
 * `durationMs` to whoever sent it the first datagram; the client sends only until the first one comes
 * back, so where its pod is ingress-isolated the push passes only as replies of that flow. The
 * promise is handled (awaiting it later still throws its error).
 */
export function udpPush(
  cluster: Cluster,
  server: LivePod,
  client: LivePod,
  opts: { port: number; rate: number; durationMs: number },
): Promise<PushResult> {
  const script = (pod: LivePod, args: string[]) =>
    cluster.kubectl(
      [
        "exec",
        "-i",
        "-n",
        pod.namespace,
        pod.pod,
        "--",
        ...NODE_IN_IMAGE,
        "--input-type=module-typescript",
        "-",
        ...args,
      ],
      UDP_PUSH,
    );
  const done = (async () => {
    const serverOut = script(server, [
      "server",
      String(opts.port),
      String(opts.rate),
      String(opts.durationMs),
    ]);
    serverOut.catch(() => {}); // awaited below
    // The client resends its first datagram until an answer comes, so it may start before the server
    // listens; its own clock ends its count, with room for the server's exec to start late.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const clientOut = script(client, [
      "client",
      server.ip,
      String(opts.port),
      String(opts.durationMs + 5000),
    ]);
    const [s, c] = await Promise.all([serverOut, clientOut]);
    // The server prints "ready", then its result.
    const { sent, startedAt } = JSON.parse(s.trim().split("\n").pop() ?? "{}") as PushResult;
    const { received, overflowed } = JSON.parse(c.trim()) as PushResult;
    return { sent, received, overflowed, startedAt };
  })();
  done.catch(() => {});
  return done;
}
