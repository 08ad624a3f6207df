// Workloads of the cluster suite as users run them: a Deployment per pod of a lab topology (the
// demo's, by default), running the image's probe server on the pod's container ports, with readiness
// and liveness probes; probes between the pods with `kubectl exec` of the image's probe client; and
// the verdicts `sluice matrix` gives for the same objects (the real pods, with their real addresses).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";
import { run } from "../../../operator/src/lab/exec.ts";
import { REPO_ROOT } from "../../../operator/src/lab/local-apiserver.ts";
import type { TrafficReport, TrafficSpec } from "../../../operator/src/lab/traffic-protocol.ts";
import type { Cluster } from "./cluster.ts";

/** The sluice CLI inside the image (scripts/image-build.sh: a launcher without a shell). */
export const SLUICE_IN_IMAGE = ["/opt/sluice/bin/sluice"];

interface Port {
  name?: string;
  containerPort: number;
  protocol?: string;
}
interface TopologyPod {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec: { containers: { ports?: Port[] }[] };
}
interface TopologyNamespace {
  metadata: { name: string; labels?: Record<string, string> };
}

export interface Workload {
  namespace: string;
  /** The topology's pod name: the Deployment's name and its `app` label. */
  name: string;
  labels: Record<string, string>;
  ports: Port[];
}

export interface LivePod extends Workload {
  pod: string;
  ip: string;
}

export interface Verdict {
  from: string;
  to: string;
  port: number;
  protocol: string;
  verdict: "allow" | "deny";
}

export function loadTopology(file = join(REPO_ROOT, "samples/demo/topology.yaml")): {
  namespaces: TopologyNamespace[];
  workloads: Workload[];
} {
  const items = parseAllDocuments(readFileSync(file, "utf8")).flatMap((d) => {
    const o = d.toJS() as { kind: string; items?: unknown[] };
    return o.kind === "List" ? (o.items as { kind: string }[]) : [o];
  }) as { kind: string }[];
  const namespaces = items.filter((i) => i.kind === "Namespace") as unknown as TopologyNamespace[];
  const workloads = (items.filter((i) => i.kind === "Pod") as unknown as TopologyPod[]).map((p) => ({
    namespace: p.metadata.namespace,
    name: p.metadata.name,
    // Labels that differ per rollout are the Deployment's to set.
    labels: Object.fromEntries(
      Object.entries(p.metadata.labels ?? {}).filter(([k]) => k !== "pod-template-hash"),
    ),
    ports: p.spec.containers.flatMap((c) => c.ports ?? []),
  }));
  return { namespaces, workloads };
}

const portSpec = (ports: readonly Port[]) =>
  ports.map((p) => `${p.containerPort}/${p.protocol ?? "TCP"}`).join(",");

export function deploymentManifests(
  image: string,
  ns: TopologyNamespace[],
  workloads: readonly Workload[],
): string {
  const docs: object[] = ns.map((n) => ({ apiVersion: "v1", kind: "Namespace", metadata: n.metadata }));
  for (const w of workloads) {
    const tcp = w.ports.find((p) => (p.protocol ?? "TCP") === "TCP");
    // kubelet's probes come from the node: they keep working under default deny (allow-localhost).
    const probe = tcp
      ? { tcpSocket: { port: tcp.containerPort }, periodSeconds: 2, failureThreshold: 2, timeoutSeconds: 1 }
      : undefined;
    docs.push({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: w.name, namespace: w.namespace },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: w.labels.app ?? w.name } },
        template: {
          metadata: { labels: w.labels },
          spec: {
            terminationGracePeriodSeconds: 1,
            automountServiceAccountToken: false,
            containers: [
              {
                name: "probe",
                image,
                imagePullPolicy: "Never",
                args: ["probe", "serve", "--ports", portSpec(w.ports)],
                ports: w.ports,
                // The startup probe holds the liveness probe back until the server listens: a slow
                // start on a loaded machine is not a failure of policy.
                ...(probe
                  ? {
                      startupProbe: { ...probe, periodSeconds: 1, failureThreshold: 60 },
                      readinessProbe: probe,
                      livenessProbe: probe,
                    }
                  : {}),
              },
            ],
          },
        },
      },
    });
  }
  return docs.map((d) => stringify(d)).join("---\n");
}

/** Applies the Deployments and waits until every one is Available; their running pods. */
export async function deployWorkloads(
  cluster: Cluster,
  manifests: string,
  namespaces: readonly string[],
  workloads: readonly Workload[],
): Promise<LivePod[]> {
  await cluster.kubectl(["apply", "-f", "-"], manifests);
  for (const ns of namespaces)
    await cluster.kubectl([
      "wait",
      "--for=condition=Available",
      "deployment",
      "--all",
      "-n",
      ns,
      "--timeout=120s",
    ]);
  return livePods(cluster, workloads);
}

interface PodJson {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  status: { podIP?: string; containerStatuses?: { ready: boolean; restartCount: number }[] };
}

/** The running pod of each workload (one replica each). */
export async function livePods(cluster: Cluster, workloads: readonly Workload[]): Promise<LivePod[]> {
  const out: LivePod[] = [];
  for (const w of workloads) {
    const list = JSON.parse(
      await cluster.kubectl([
        "get",
        "pods",
        "-n",
        w.namespace,
        "-l",
        `app=${w.labels.app ?? w.name}`,
        "-o",
        "json",
      ]),
    ) as { items: PodJson[] };
    const p = list.items.find((i) => i.status.podIP);
    if (!p?.status.podIP) throw new Error(`no running pod of ${w.namespace}/${w.name}`);
    out.push({ ...w, pod: p.metadata.name, ip: p.status.podIP });
  }
  return out;
}

export async function podHealth(
  cluster: Cluster,
  namespace: string,
): Promise<{ pod: string; ready: boolean; restarts: number }[]> {
  const list = JSON.parse(await cluster.kubectl(["get", "pods", "-n", namespace, "-o", "json"])) as {
    items: PodJson[];
  };
  return list.items.map((p) => ({
    pod: p.metadata.name,
    ready: (p.status.containerStatuses ?? []).every((c) => c.ready),
    restarts: (p.status.containerStatuses ?? []).reduce((n, c) => n + c.restartCount, 0),
  }));
}

/** What `sluice matrix` says for the live pods (as the API server has them) under the given policies. */
export async function matrixFor(
  cluster: Cluster,
  namespaces: readonly string[],
  policyPaths: readonly string[],
): Promise<Verdict[]> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-cluster-matrix-"));
  try {
    const objects = await cluster.kubectl(["get", "namespaces,pods", "-A", "-o", "yaml"]);
    const wanted = (
      parseAllDocuments(objects)[0].toJS() as {
        items: { kind: string; metadata: { name: string; namespace?: string } }[];
      }
    ).items.filter((o) =>
      namespaces.includes(o.kind === "Namespace" ? o.metadata.name : (o.metadata.namespace ?? "")),
    );
    writeFileSync(join(dir, "objects.yaml"), stringify({ apiVersion: "v1", kind: "List", items: wanted }));
    const r = await run(join(REPO_ROOT, "bin/sluice"), [
      "matrix",
      ...[join(dir, "objects.yaml"), ...policyPaths].flatMap((f) => ["-f", f]),
      "-o",
      "json",
    ]);
    return (JSON.parse(r.stdout) as { results: Verdict[] }).results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface ProbeResult {
  port: number;
  protocol: string;
  /** refused: the packet reached the pod (no listener): allowed, as in the lab. */
  result: "open" | "blocked" | "refused";
}

/** Probes every row's port from its source pod with the image's probe client; one exec per pair. */
export async function probeRows(
  cluster: Cluster,
  pods: readonly LivePod[],
  rows: readonly Verdict[],
): Promise<Verdict[]> {
  const byKey = new Map(pods.map((p) => [`${p.namespace}/${p.pod}`, p]));
  const pairs = new Map<string, Verdict[]>();
  for (const r of rows) {
    const k = `${r.from} ${r.to}`;
    pairs.set(k, [...(pairs.get(k) ?? []), r]);
  }
  const out: Verdict[] = [];
  await Promise.all(
    [...pairs.values()].map(async (group) => {
      const src = byKey.get(group[0].from);
      const dst = byKey.get(group[0].to);
      if (!src || !dst) throw new Error(`no live pod for ${group[0].from} or ${group[0].to}`);
      const ports = group.map((r) => `${r.port}/${r.protocol}`).join(",");
      const stdout = await cluster.kubectl([
        "exec",
        "-n",
        src.namespace,
        src.pod,
        "--",
        ...SLUICE_IN_IMAGE,
        "probe",
        "connect",
        "--to",
        dst.ip,
        "--ports",
        ports,
        "--timeout",
        "1s",
        "-o",
        "json",
      ]);
      for (const p of JSON.parse(stdout) as ProbeResult[])
        out.push({
          from: group[0].from,
          to: group[0].to,
          port: p.port,
          protocol: p.protocol,
          verdict: p.result === "blocked" ? "deny" : "allow",
        });
    }),
  );
  return sortVerdicts(out);
}

export function sortVerdicts(rows: readonly Verdict[]): Verdict[] {
  const key = (r: Verdict) => `${r.from} ${r.to} ${r.protocol} ${String(r.port).padStart(5, "0")}`;
  return [...rows]
    .sort((a, b) => key(a).localeCompare(key(b)))
    .map(({ from, to, port, protocol, verdict }) => ({ from, to, port, protocol, verdict }));
}

/** Probes until the cluster measures what the matrix says (agents apply asynchronously). */
export async function probeUntil(
  cluster: Cluster,
  pods: readonly LivePod[],
  want: readonly Verdict[],
  timeoutMs = 60_000,
): Promise<Verdict[]> {
  const sorted = sortVerdicts(want);
  const t0 = Date.now();
  for (;;) {
    const got = await probeRows(cluster, pods, sorted);
    if (JSON.stringify(got) === JSON.stringify(sorted) || Date.now() - t0 > timeoutMs) return got;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The lab's traffic sender, run inside a pod (the image carries the lab's scripts). */
export async function sendTraffic(
  cluster: Cluster,
  from: LivePod,
  spec: TrafficSpec,
): Promise<TrafficReport> {
  const sender = "/opt/sluice/app/operator/src/lab/traffic-sender.ts";
  const out = await cluster.kubectl(
    [
      "exec",
      "-i",
      "-n",
      from.namespace,
      from.pod,
      "--",
      "/opt/sluice/node/bin/node",
      "--disable-warning=ExperimentalWarning",
      sender,
    ],
    JSON.stringify(spec),
  );
  return JSON.parse(out) as TrafficReport;
}

/** The stream datagrams a pod's `probe serve` counted on a UDP port, by "<port>/<stream>". */
export async function streamCounts(
  cluster: Cluster,
  pod: LivePod,
  port: number,
): Promise<Record<string, number>> {
  const out = await cluster.kubectl([
    "exec",
    "-n",
    pod.namespace,
    pod.pod,
    "--",
    ...SLUICE_IN_IMAGE,
    "probe",
    "stats",
    "--port",
    `${port}/UDP`,
    "-o",
    "json",
  ]);
  return (JSON.parse(out) as { udpStreams: Record<string, number> }).udpStreams;
}
