// "A pod is enforced from its first packet", measured on real pod starts. New pods that send a
// numbered UDP stream from the first instant their container runs, under an egress policy that denies
// it, to a sink no policy isolates (only the sender's own enforcement can stop them): the sink must
// count none of it. New pods isolated by an ingress policy, while a peer already sends to every
// address of the pod range: they must count none of it. Controls with the same traffic and no policy
// must count it all, so the test fails when the traffic or its counting does not work.
import { stringify } from "yaml";
import type { Cluster } from "./cluster.ts";
import { type LivePod, sendTraffic, streamCounts } from "./workloads.ts";

const NS = "first-packet";
const PORT = 7000;

export interface FirstPacketResult {
  /** Datagrams denied senders sent / that reached the sink. */
  deniedSent: number;
  deniedLeaked: number;
  /** Datagrams the control senders sent / that reached the sink. */
  controlSent: number;
  controlReceived: number;
  /** Isolated new pods, and the peer's datagrams they received (must be 0). */
  isolatedPods: number;
  isolatedLeaked: number;
  /** The open control pods received the peer's datagrams (more than 0 each). */
  openReceived: number[];
}

const pod = (name: string, labels: Record<string, string>, args: string[], restartPolicy = "Never") => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: NS, labels },
  spec: {
    restartPolicy,
    terminationGracePeriodSeconds: 1,
    automountServiceAccountToken: false,
    containers: [{ name: "probe", image: "IMAGE", imagePullPolicy: "Never", args }],
  },
});

function manifests(image: string, docs: object[]): string {
  return docs.map((d) => stringify(d).replaceAll("IMAGE", image)).join("---\n");
}

async function phase(cluster: Cluster, name: string): Promise<string> {
  return cluster.kubectl(["get", "pod", "-n", NS, name, "-o", "jsonpath={.status.phase}"]);
}

async function waitPhase(
  cluster: Cluster,
  names: readonly string[],
  want: readonly string[],
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const n of names)
    while (!want.includes(await phase(cluster, n))) {
      if (Date.now() > deadline)
        throw new Error(`pod ${NS}/${n} not ${want.join("/")} within ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 250));
    }
}

async function podIp(cluster: Cluster, name: string): Promise<string> {
  return cluster.kubectl(["get", "pod", "-n", NS, name, "-o", "jsonpath={.status.podIP}"]);
}

export async function measureFirstPacket(
  cluster: Cluster,
  image: string,
  starts: number,
): Promise<FirstPacketResult> {
  const serve = ["probe", "serve", "--ports", `${PORT}/UDP`];
  await cluster.kubectl(
    ["apply", "-f", "-"],
    manifests(image, [
      { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } },
      {
        apiVersion: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        metadata: { name: "senders-no-egress", namespace: NS },
        spec: { podSelector: { matchLabels: { role: "sender" } }, policyTypes: ["Egress"] },
      },
      {
        apiVersion: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        metadata: { name: "isolated-no-ingress", namespace: NS },
        spec: { podSelector: { matchLabels: { role: "isolated" } }, policyTypes: ["Ingress"] },
      },
      pod("sink", { role: "sink" }, serve, "Always"),
      pod("peer", { role: "peer" }, serve, "Always"),
    ]),
  );
  await waitPhase(cluster, ["sink", "peer"], ["Running"], 60_000);
  const sinkIp = await podIp(cluster, "sink");
  const peerIp = await podIp(cluster, "peer");
  const asLive = (name: string, ip: string): LivePod => ({
    namespace: NS,
    name,
    pod: name,
    ip,
    labels: {},
    ports: [],
  });
  const sink = asLive("sink", sinkIp);
  const peer = asLive("peer", peerIp);

  // The peer sends to every address of the pod range (the sink's /24) for as long as pods start.
  const prefix = sinkIp.split(".").slice(0, 3).join(".");
  const targets = Array.from({ length: 253 }, (_, i) => i + 2)
    .map((o) => `${prefix}.${o}`)
    .filter((ip) => ip !== peerIp);
  const hammer = sendTraffic(cluster, peer, {
    durationMs: 8_000 + starts * 2_500,
    udp: targets.map((ip) => ({ stream: `h${ip.split(".")[3]}`, ip, port: PORT, rate: 40 })),
  });

  const send = (stream: string) => [
    "probe",
    "send",
    "--to",
    sinkIp,
    "--port",
    `${PORT}/UDP`,
    "--stream",
    stream,
    "--rate",
    "2000",
    "--duration",
    "1500ms",
  ];
  const senders: string[] = [];
  const controls: string[] = [];
  const isolated: string[] = [];
  const open: string[] = [];
  await new Promise((r) => setTimeout(r, 1000));
  for (let i = 0; i < starts; i++) {
    const batch = [
      pod(`sender-${i}`, { role: "sender" }, send(`s${i}`)),
      pod(`isolated-${i}`, { role: "isolated" }, serve, "Always"),
    ];
    senders.push(`sender-${i}`);
    isolated.push(`isolated-${i}`);
    // One control of each kind every third start: the same traffic with no policy arrives.
    if (i % 3 === 0) {
      batch.push(
        pod(`control-${i}`, { role: "control" }, send(`c${i}`)),
        pod(`open-${i}`, { role: "open" }, serve, "Always"),
      );
      controls.push(`control-${i}`);
      open.push(`open-${i}`);
    }
    await cluster.kubectl(["apply", "-f", "-"], manifests(image, batch));
    await waitPhase(
      cluster,
      batch.map((b) => (b as { metadata: { name: string } }).metadata.name),
      ["Running", "Succeeded"],
      60_000,
    );
  }
  await waitPhase(cluster, [...senders, ...controls], ["Succeeded"], 60_000);
  await hammer;

  const sentBy = async (name: string) => {
    const log = await cluster.kubectl(["logs", "-n", NS, name]);
    return (
      Object.values(
        (JSON.parse(log.trim().split("\n").pop() ?? "{}") as { udpSent: Record<string, number> }).udpSent,
      )[0] ?? 0
    );
  };
  const sinkCounts = await streamCounts(cluster, sink, PORT);
  const arrived = (stream: string) => sinkCounts[`${PORT}/${stream}`] ?? 0;
  const received = async (name: string) => {
    const ip = await podIp(cluster, name);
    const counts = await streamCounts(cluster, asLive(name, ip), PORT);
    return counts[`${PORT}/h${ip.split(".")[3]}`] ?? 0;
  };
  const result: FirstPacketResult = {
    deniedSent: 0,
    deniedLeaked: 0,
    controlSent: 0,
    controlReceived: 0,
    isolatedPods: isolated.length,
    isolatedLeaked: 0,
    openReceived: [],
  };
  for (const [i, n] of senders.entries()) {
    result.deniedSent += await sentBy(n);
    result.deniedLeaked += arrived(`s${i}`);
  }
  for (const n of controls) {
    result.controlSent += await sentBy(n);
    result.controlReceived += arrived(`c${n.split("-")[1]}`);
  }
  for (const n of isolated) result.isolatedLeaked += await received(n);
  for (const n of open) result.openReceived.push(await received(n));
  await cluster.kubectl(["delete", "namespace", NS, "--wait=false"]);
  return result;
}
