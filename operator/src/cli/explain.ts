// `sluice explain --from <end> --to <end> --port 80/TCP [-f <files>... | --kubeconfig ...]`: the verdict
// for one packet and the chain of policies and rules behind it (policy/explain.ts), from manifests or
// from a cluster's objects. An end is a pod (ns/pod), a node (node/NAME) or an address (a CIDR stands
// for its first address). The text is for people; -o json|yaml carries the whole explanation.
import type { KubeConfig } from "@kubernetes/client-node";
import { formatPort, type ProbePort, parsePorts } from "../api/matrix-rows.ts";
import type { Pod } from "../api/k8s.ts";
import { classifyObjects } from "../api/objects.ts";
import { resourceServed } from "../kube/informer.ts";
import { rawList } from "../kube/raw.ts";
import {
  ADMIN_NETWORK_POLICIES,
  BASELINE_ADMIN_NETWORK_POLICIES,
  CLUSTER_NETWORK_POLICIES,
  CLUSTER_SECURITY_POLICIES,
  collectionPath,
  NAMESPACES,
  NETWORK_POLICIES,
  NODES,
  PODS,
  type Resource,
  SECURITY_IDENTITIES,
  SECURITY_POLICIES,
} from "../kube/resources.ts";
import { formatIp, parseIp, parsePrefix } from "../policy/cidr.ts";
import type { PolicyInputs } from "../policy/compile.ts";
import { type Explanation, Explainer, type ExplainStep, type SideExplanation } from "../policy/explain.ts";
import { inputsFromObjects } from "../policy/index.ts";
import { Protocol } from "../policy/mapstate.ts";
import { namedPortsOf, protocolName, protocolNumber } from "../policy/ports.ts";
import { formatRule, ruleLabel } from "../policy/rule-names.ts";
import { trafficAddresses } from "../policy/matrix.ts";
import { isHostNetworkPod, nodeIps, podIps } from "../policy/universe.ts";
import { checkInputs, loadInputs } from "./inputs.ts";
import { kubeConfigFromFlags, kubeOptions, kubeUsage } from "./kube-flags.ts";
import { allowLocalhostOption } from "./lab-args.ts";
import { outputFormat, outputOption, writeOutput } from "./output.ts";
import { parseCommandArgs, UsageError } from "./usage.ts";

const usage =
  "usage: sluice explain --from <end> --to <end> --port <port> [-f <file or dir>...] [-o table|json|yaml]\n" +
  "         [--ipv6] [--allow-localhost always|policy]\n" +
  `         ${kubeUsage}\n` +
  "       the verdict for one packet and the policies and rules that decide it: egress at the source, then\n" +
  "       ingress at the destination (Admin tier, namespace policies, Baseline tier, default)\n" +
  "       <end>: ns/pod, node/NAME, or an address (a CIDR: its first address)\n" +
  "       <port>: 80/TCP (TCP when left out), 53/UDP, 80/SCTP, a container port name of the destination\n" +
  "               (http), ICMP or ICMPv6 (echo request), TYPE[:CODE]/ICMP, TYPE[:CODE]/ICMPv6\n" +
  "       -f: manifests (- for stdin); without -f, the objects of the cluster of the kubeconfig\n" +
  "       --ipv6: the ends' IPv6 addresses (default IPv4 where both have one)";

/** What an end names: its addresses, and how to show it. */
interface End {
  text: string;
  addresses: string[];
  pod?: Pod;
}

export function resolveEnd(flag: string, text: string, inputs: PolicyInputs): End {
  const ip = parseIp(text);
  if (ip) return { text, addresses: [text] };
  const prefix = parsePrefix(text);
  if (prefix) return { text, addresses: [formatIp(prefix.family, prefix.addr)] };
  const slash = text.indexOf("/");
  if (slash <= 0 || slash === text.length - 1 || text.indexOf("/", slash + 1) >= 0)
    throw new UsageError(`${flag}: ${JSON.stringify(text)}: expected ns/pod, node/NAME or an address`);
  const [left, right] = [text.slice(0, slash), text.slice(slash + 1)];
  if (left === "node") {
    const n = (inputs.nodes ?? []).find((x) => x.metadata.name === right);
    if (!n) throw new Error(`${flag}: node ${right} not found`);
    const addresses = nodeIps(n);
    if (addresses.length === 0) throw new Error(`${flag}: node ${right} has no InternalIP or ExternalIP`);
    return { text, addresses };
  }
  const pod = inputs.pods.find(
    (p) => (p.metadata.namespace ?? "default") === left && p.metadata.name === right,
  );
  if (!pod) throw new Error(`${flag}: pod ${text} not found`);
  // A host-network pod has no endpoint of its own: its traffic is its node's, as in the matrix.
  if (isHostNetworkPod(pod)) {
    const addresses = trafficAddresses(pod, inputs.nodes ?? []);
    if (addresses.length === 0)
      throw new Error(
        `${flag}: pod ${text} uses the host network and its node ${pod.spec?.nodeName} has no address`,
      );
    return { text, addresses };
  }
  const addresses = podIps(pod);
  if (addresses.length === 0) throw new Error(`${flag}: pod ${text} has no address yet`);
  return { text, addresses, pod };
}

// The addresses a connection between the ends would use: the same family, IPv4 unless --ipv6.
export function pickAddresses(from: End, to: End, ipv6: boolean): { src: string; dst: string } {
  const family = (ip: string) => (ip.includes(":") ? 6 : 4);
  for (const f of ipv6 ? [6] : [4, 6]) {
    const src = from.addresses.find((a) => family(a) === f);
    const dst = to.addresses.find((a) => family(a) === f);
    if (src && dst) return { src, dst };
  }
  throw new Error(
    `${from.text} (${from.addresses.join(", ")}) and ${to.text} (${to.addresses.join(", ")}) have no ${ipv6 ? "IPv6 " : ""}addresses of one family`,
  );
}

export interface ExplainPort {
  protocol: number;
  // As map keys hold it: the port, or for ICMP/ICMPv6 type << 8 | code.
  port: number;
  label: string;
}

const ICMP_ECHO: Record<number, number> = { 4: 8, 6: 128 };

// One --port value. Numbers and TCP/UDP/SCTP go through the ports parser every command uses.
export function parseExplainPort(text: string, to: End, v6: boolean): ExplainPort {
  const [head, proto = "", extra] = text.split("/");
  if (extra !== undefined || head === "")
    throw new UsageError(`--port: ${JSON.stringify(text)}: expected PORT[/PROTOCOL]`);
  const icmp = (head.toUpperCase().startsWith("ICMP") && proto === "" ? head : proto).toUpperCase();
  if (icmp === "ICMP" || icmp === "ICMPV6") {
    const protocol = icmp === "ICMP" ? Protocol.ICMP : Protocol.ICMPV6;
    if ((protocol === Protocol.ICMPV6) !== v6)
      throw new UsageError(
        `--port: ${JSON.stringify(text)}: ${icmp === "ICMP" ? "ICMP is IPv4's, ICMPv6 IPv6's" : "ICMPv6 is IPv6's, ICMP IPv4's"}`,
      );
    const name = protocolName(protocol);
    if (proto === "") return { protocol, port: ICMP_ECHO[v6 ? 6 : 4] << 8, label: `${name} echo request` };
    const m = /^(\d{1,3})(?::(\d{1,3}))?$/.exec(head);
    const type = Number(m?.[1]);
    const code = Number(m?.[2] ?? 0);
    if (!m || type > 255 || code > 255)
      throw new UsageError(`--port: ${JSON.stringify(text)}: expected TYPE[:CODE]/${name}, each 0..255`);
    return { protocol, port: (type << 8) | code, label: `${name} type ${type} code ${code}` };
  }
  if (/^\d+$/.test(head)) {
    let p: ProbePort;
    try {
      [p] = parsePorts(text);
    } catch (e) {
      // parsePorts names its own flag, --ports, and the protocols it probes.
      const message = String(e instanceof Error ? e.message : e);
      throw new UsageError(
        message.replace(/^--ports:/, "--port:").replace(/(TCP, UDP, SCTP)$/, "$1, ICMP, ICMPv6"),
      );
    }
    return { protocol: protocolNumber(p.protocol), port: p.port, label: formatPort(p) };
  }
  // A name: the destination pod's container port of that name (and protocol, when given).
  const protocol = proto === "" ? undefined : protocolNumber(proto.toUpperCase());
  if (proto !== "" && !["TCP", "UDP", "SCTP"].includes(proto.toUpperCase()))
    throw new UsageError(
      `--port: ${JSON.stringify(text)}: protocol must be one of TCP, UDP, SCTP, ICMP, ICMPv6`,
    );
  if (!to.pod) throw new UsageError(`--port: ${JSON.stringify(head)}: a port name needs a pod as --to`);
  const found = (namedPortsOf(to.pod).get(head) ?? []).find(
    (p) => protocol === undefined || p.protocol === protocol,
  );
  if (!found) throw new Error(`--port: pod ${to.text} has no container port named ${JSON.stringify(head)}`);
  return {
    protocol: found.protocol,
    port: found.port,
    label: `${found.port}/${protocolName(found.protocol)} (${head})`,
  };
}

// --- the cluster's objects -------------------------------------------------------------------------

// The kinds whose CRDs may be missing (Sluice not installed, or the upstream policy API not): listed
// only where discovery says they are served.
const REQUIRED: readonly Resource[] = [NAMESPACES, PODS, NODES, NETWORK_POLICIES];
const OPTIONAL: readonly Resource[] = [
  SECURITY_POLICIES,
  CLUSTER_SECURITY_POLICIES,
  SECURITY_IDENTITIES,
  CLUSTER_NETWORK_POLICIES,
  ADMIN_NETWORK_POLICIES,
  BASELINE_ADMIN_NETWORK_POLICIES,
];

export async function clusterObjects(kc: KubeConfig): Promise<{ objects: unknown[]; notServed: string[] }> {
  const served = await Promise.all(OPTIONAL.map((r) => resourceServed(kc, r)));
  const kinds = [...REQUIRED, ...OPTIONAL.filter((_, i) => served[i])];
  const lists = await Promise.all(
    kinds.map(async (r) => {
      const list = await rawList(kc, collectionPath(r));
      // List items come without kind; the compiler's inputs are sorted by it.
      return list.items.map((o) => ({ ...o, kind: r.kind }));
    }),
  );
  return { objects: lists.flat(), notServed: OPTIONAL.filter((_, i) => !served[i]).map((r) => r.kind) };
}

// --- text -----------------------------------------------------------------------------------------

const ACTION: Record<string, string> = { allow: "Allow", deny: "Deny", pass: "Pass" };

// The side's decision, or with `audit` what its Audit policies would decide instead.
function decisionText(s: SideExplanation, audit = false): string {
  const d = audit && s.audit ? s.audit : s.decision;
  const isolatedBy = audit && s.audit ? s.audit.isolatedBy : s.isolatedBy;
  if (d.by === "allow-localhost")
    return "allow-localhost (the node reaches its own pods whatever the policies say)";
  if (d.by === "rule" && d.rule) return `${formatRule(d.rule)} (${ACTION[d.rule.action]})`;
  if (d.verdict === "deny") return `default deny (isolated by ${isolatedBy.join(", ")})`;
  if (d.passedBy) return `default allow (after the Baseline Pass of ${formatRule(d.passedBy)})`;
  return `default allow (no policy isolates ${s.endpoint} for ${s.direction})`;
}

function peerText(s: SideExplanation): string {
  const p = s.peer;
  const what =
    p.kind === "pod"
      ? `pod ${p.pod ?? p.address}`
      : p.kind === "host"
        ? `node ${p.node} itself (host)`
        : p.kind === "remote-node"
          ? `node ${p.node ?? p.address} (remote-node)`
          : `${p.address} (${p.kind}${p.cidrs.length > 0 ? `, in ${p.cidrs.join(", ")}` : ""})`;
  return `${what}, identity ${p.identity}`;
}

function stepText(st: ExplainStep): string {
  const where = `${st.policy}${st.priority === undefined ? "" : ` (priority ${st.priority})`}`;
  const rule = st.rule ? `${ruleLabel(st.rule)} ` : "";
  const what: Record<ExplainStep["outcome"], string> = {
    allow: `${rule}Allow`,
    deny: `${rule}Deny`,
    pass:
      st.tier === "admin" ? `${rule}Pass: on to the namespace policies` : `${rule}Pass: on to the default`,
    "no-match": "no rule matches",
    isolates: "no rule matches; isolates the pod",
    overridden: `${rule}Allow, overridden by a Deny`,
    "not-reached": "not reached",
  };
  const decides = st.decides ? (st.audit ? "   <- would decide" : "   <- decides") : "";
  return `    ${st.tier.padEnd(9)} ${st.audit ? "[audit] " : ""}${where}: ${what[st.outcome]}${decides}`;
}

function sideText(s: SideExplanation, unreached = false): string[] {
  const verdict = s.datapath.verdict === "deny" ? "DENY" : "allow";
  const state = unreached ? `would ${verdict} (not reached: dropped at the source's egress)` : verdict;
  const lines = [
    `  ${s.direction} at ${s.endpoint} (node ${s.node}), ${s.direction === "egress" ? "to" : "from"} ${peerText(s)}: ${state}`,
    `    by ${decisionText(s)}`,
    ...(s.audit
      ? [
          `    audit: the Audit policies would ${s.audit.verdict === "deny" ? "DENY" : "allow"} by ${decisionText(s, true)}`,
        ]
      : []),
    ...s.steps.map(stepText),
  ];
  if (s.decision.by === "default" && s.steps.length > 0)
    lines.push(
      `    ${"default".padEnd(9)} ${s.decision.verdict}${s.isolated ? ` (isolated by ${s.isolatedBy.join(", ")})` : " (not isolated)"}   <- decides`,
    );
  if (s.problem) lines.push(`    WARNING: ${s.problem}`);
  return lines;
}

function endText(e: Explanation["from"]): string {
  return e.pod ? `${e.pod} (${e.address})` : e.node ? `node ${e.node} (${e.address})` : e.address;
}

export function formatExplanation(x: Explanation, portLabel: string): string {
  const denied = x.egress?.datapath.verdict === "deny" ? x.egress : x.ingress;
  const head = `${endText(x.from)} -> ${endText(x.to)} ${portLabel}: ${x.verdict === "deny" ? "DENIED" : "allowed"}`;
  const summary =
    x.verdict === "deny" && denied
      ? `  dropped at ${denied.direction === "egress" ? "the source's egress" : "the destination's ingress"} by ${decisionText(denied)}`
      : undefined;
  const audit = x.audit
    ? `  audit: the Audit policies would ${x.audit.verdict === "deny" ? "DENY" : "allow"} it (in Audit they change nothing)`
    : undefined;
  return [
    head,
    ...(summary ? [summary] : []),
    ...(audit ? [audit] : []),
    ...(x.egress ? sideText(x.egress) : []),
    ...(x.ingress ? sideText(x.ingress, x.egress?.datapath.verdict === "deny") : []),
    ...x.notes.map((n) => `  note: ${n}`),
  ].join("\n");
}

// --- the command ----------------------------------------------------------------------------------

export interface ExplainRequest {
  from: string;
  to: string;
  port: string;
  ipv6?: boolean;
  allowLocalhost?: "always" | "policy";
}

/** Explains one request against the inputs: what the command and the demo print. */
export function explainRequest(
  inputs: PolicyInputs,
  req: ExplainRequest,
): { explanation: Explanation; portLabel: string; json: Record<string, unknown> } {
  const from = resolveEnd("--from", req.from, inputs);
  const to = resolveEnd("--to", req.to, inputs);
  const { src, dst } = pickAddresses(from, to, req.ipv6 ?? false);
  const port = parseExplainPort(req.port, to, src.includes(":"));
  const explanation = new Explainer(inputs, { allowLocalhost: req.allowLocalhost }).explain(
    src,
    dst,
    port.protocol,
    port.port,
  );
  const icmp = port.protocol === Protocol.ICMP || port.protocol === Protocol.ICMPV6;
  const json = {
    ...explanation,
    protocol: protocolName(port.protocol),
    ...(icmp ? { port: undefined, icmp: { type: port.port >> 8, code: port.port & 0xff } } : {}),
  };
  return { explanation, portLabel: port.label, json: JSON.parse(JSON.stringify(json)) };
}

export async function explainMain(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: [...argv],
      options: {
        from: { type: "string" },
        to: { type: "string" },
        port: { type: "string" },
        file: { type: "string", short: "f", multiple: true },
        ipv6: { type: "boolean", default: false },
        "allow-localhost": { type: "string" },
        ...kubeOptions,
        ...outputOption,
      },
      strict: true,
    },
    usage,
  );
  const output = outputFormat(values.output);
  for (const flag of ["from", "to", "port"] as const)
    if (!values[flag]) throw new UsageError(`--${flag} is required`);
  const allowLocalhost = allowLocalhostOption(values["allow-localhost"]);
  const files = values.file;
  if (files && (values.kubeconfig !== undefined || values.context !== undefined))
    throw new UsageError("-f and --kubeconfig/--context: give manifests or a cluster, not both");
  let objects: unknown[];
  if (files) {
    checkInputs("-f", files);
    const { documents, errors } = loadInputs(files);
    for (const e of errors) process.stderr.write(`${e.path}:${e.line}: ${e.message}\n`);
    if (errors.length > 0) return 1;
    objects = documents.map((d) => d.object);
  } else {
    const cluster = await clusterObjects(kubeConfigFromFlags(values));
    objects = cluster.objects;
    if (cluster.notServed.length > 0 && output === "table")
      process.stderr.write(`note: not served by the cluster, so not read: ${cluster.notServed.join(", ")}\n`);
  }
  const inputs = inputsFromObjects(classifyObjects(objects));
  const r = explainRequest(inputs, {
    from: values.from ?? "",
    to: values.to ?? "",
    port: values.port ?? "",
    ipv6: values.ipv6,
    allowLocalhost,
  });
  writeOutput(output, r.json, () => formatExplanation(r.explanation, r.portLabel));
  return 0;
}
