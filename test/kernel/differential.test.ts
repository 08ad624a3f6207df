// The differential test (ARCHITECTURE §6): for random clusters, policies (NetworkPolicy, SecurityPolicy,
// ClusterSecurityPolicy) and probes, three verdicts must agree for every enforcing side of every probe:
//   (a) the reference evaluator, reading the policy objects directly;
//   (b) lookupVerdict over the compiled MapState (the TS simulation of the BPF decision);
//   (c) the kernel program through BPF_PROG_RUN, with the compiled state written into real maps by the
//       map writer (MapSync) and a packet crafted from the probe (v4 and v6; TCP, UDP, SCTP, ICMP and
//       ICMPv6 echo and errors, and a protocol without ports).
// And the source check: the endpoint is installed with its pod's addresses, as the agent writes it, and
// the same probes sent from another pod's address (a borrowed identity) must drop whatever the policy.
// BPF_PROG_RUN runs tc programs on the loopback device (ifindex 1), so one endpoint at a time is
// installed there and probed from both of its sides. Runtime is bounded (SLUICE_DIFF_SECONDS, default
// 45 s, at most SLUICE_DIFF_RUNS = 1000 clusters); SLUICE_DIFF_SEED replays a run, with the same SLUICE_DIFF_RUNS.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { dirCode } from "../../operator/src/datapath/codec/keys.ts";
import { type Datapath, loadDatapath } from "../../operator/src/datapath/kernel/programs.ts";
import { MapSync } from "../../operator/src/datapath/writer/sync.ts";
import {
  compile,
  inputsFromObjects,
  lookupIdentity,
  lookupVerdict,
  ReferenceEvaluator,
  ReservedRuleId,
} from "../../operator/src/policy/index.ts";
import type { Direction, EndpointState, MapState } from "../../operator/src/policy/mapstate.ts";
import { podIps } from "../../operator/src/policy/universe.ts";
import { IPPROTO, isV6, packet, parseAddress, quote, type PacketSpec } from "../support/packets.ts";
import { privilegeProblem, requirePrivileged } from "../support/privileged.ts";
import {
  allowLocalhostMode,
  asObjects,
  cluster,
  EXTERNAL_IPS,
  NODE_ADDRESSES,
  NODES,
} from "../unit/policy-fixtures.ts";

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const SECONDS = Number(process.env.SLUICE_DIFF_SECONDS ?? 45);
const RUNS = Number(process.env.SLUICE_DIFF_RUNS ?? 1000);
const SEED = process.env.SLUICE_DIFF_SEED === undefined ? undefined : Number(process.env.SLUICE_DIFF_SEED);

// A probe as the policy sees it: protocol and port (ICMP: type << 8 | code), per address family.
type Probe = { proto: number; port: number };
const V4_PROBES: Probe[] = [
  { proto: IPPROTO.TCP, port: 80 },
  { proto: IPPROTO.TCP, port: 85 },
  { proto: IPPROTO.TCP, port: 90 },
  { proto: IPPROTO.TCP, port: 91 },
  { proto: IPPROTO.TCP, port: 8080 },
  { proto: IPPROTO.TCP, port: 81 },
  { proto: IPPROTO.TCP, port: 1024 },
  { proto: IPPROTO.UDP, port: 53 },
  { proto: IPPROTO.UDP, port: 80 },
  { proto: IPPROTO.SCTP, port: 80 },
  { proto: IPPROTO.ICMP, port: 8 << 8 }, // echo request
  { proto: IPPROTO.ICMP, port: (8 << 8) | 1 },
  { proto: IPPROTO.ICMP, port: 0 }, // echo reply nobody asked for
  { proto: IPPROTO.ICMP, port: (3 << 8) | 3 }, // port unreachable about an untracked flow
  { proto: IPPROTO.GRE, port: 0 },
];
const V6_PROBES: Probe[] = [
  ...V4_PROBES.filter((p) => p.proto !== IPPROTO.ICMP),
  { proto: IPPROTO.ICMPV6, port: 128 << 8 }, // echo request
  { proto: IPPROTO.ICMPV6, port: 129 << 8 }, // echo reply nobody asked for
  { proto: IPPROTO.ICMPV6, port: 1 << 8 }, // destination unreachable about an untracked flow
];

// Protocols whose probes carry ports (or an echo id) the program tracks flows by.
const PORTED = new Set<number>([IPPROTO.TCP, IPPROTO.UDP, IPPROTO.SCTP, IPPROTO.ICMP, IPPROTO.ICMPV6]);

// Every probe gets its own source port / echo id, so conntrack state of one probe never decides another.
let nextPort = 10000;
function uniquePort(): number {
  nextPort = nextPort >= 65000 ? 10000 : nextPort + 1;
  return nextPort;
}

function frame(src: string, dst: string, p: Probe): Uint8Array {
  const sport = uniquePort();
  const icmpType = p.port >> 8;
  let l4: PacketSpec["l4"];
  switch (p.proto) {
    case IPPROTO.TCP:
      l4 = { kind: "tcp", sport, dport: p.port, flags: 0x02 };
      break;
    case IPPROTO.UDP:
      l4 = { kind: "udp", sport, dport: p.port };
      break;
    case IPPROTO.SCTP:
      l4 = { kind: "sctp", sport, dport: p.port };
      break;
    case IPPROTO.ICMP:
    case IPPROTO.ICMPV6: {
      const error = p.proto === IPPROTO.ICMP ? icmpType === 3 : icmpType < 128;
      l4 = error
        ? {
            kind: "icmp",
            type: icmpType,
            code: p.port & 0xff,
            // The offending packet was sent by the error's receiver: an untracked UDP flow.
            quote: quote({ src: dst, dst: src, l4: { kind: "udp", sport, dport: uniquePort() } }),
          }
        : { kind: "icmp", type: icmpType, code: p.port & 0xff, id: sport, seq: 1 };
      break;
    }
    default:
      l4 = { kind: "raw", proto: p.proto, data: new Uint8Array(8) };
  }
  return packet({ src, dst, l4 });
}

class Kernel {
  readonly dp: Datapath;
  readonly sync: MapSync;
  readonly #ctx = new Uint8Array(192); // struct __sk_buff; ifindex (offset 40) = 1: loopback

  constructor(pinRoot: string) {
    this.dp = loadDatapath({ pinRoot });
    this.sync = MapSync.adopt(this.dp.addon, this.dp.maps, { barrier: false });
    new DataView(this.#ctx.buffer).setUint32(40, 1, true);
    this.dp.maps.config.write({ event_sample_allow: 0, event_sample_deny: 0, events_per_sec: 0, flags: 0 });
  }

  // The node's ipcache and this one endpoint on ifindex 1, through the agent's map writer.
  install(state: MapState, ep: EndpointState): void {
    this.sync.apply({ ipcache: state.ipcache, endpoints: [ep] }, () => 1);
  }

  verdict(dir: Direction, data: Uint8Array): "allow" | "deny" {
    // The pod's egress runs on the host side's ingress hook, its ingress on the egress hook.
    const fd = this.dp.programFor(dir === "egress" ? "ingress" : "egress");
    const r = this.dp.addon.progTestRun(fd, { data, ctx: this.#ctx }).retval;
    if (r !== TC_ACT_OK && r !== TC_ACT_SHOT) throw new Error(`program returned ${r}`);
    return r === TC_ACT_OK ? "allow" : "deny";
  }

  // Forgets the conntrack entry of a protocol without ports: its only "ports" are the address pair, so
  // an allowed probe would otherwise let the opposite probe through as its reply. The entry sits under
  // one of the two orientations of the pair; deleting a missing key is harmless.
  forgetPortless(epId: number, dir: Direction, proto: number, src: string, dst: string): void {
    const d = dirCode(dir);
    const base = { ep_id: epId, proto, sport: 0, dport: 0 };
    const ends = [
      { dir: d, saddr: parseAddress(src), daddr: parseAddress(dst) },
      { dir: d ^ 1, saddr: parseAddress(dst), daddr: parseAddress(src) },
    ];
    for (const e of ends)
      if (isV6(src)) this.dp.maps.conntrack6.delete({ ...base, ...e });
      else this.dp.maps.conntrack4.delete({ ...base, ...e });
  }

  close(): void {
    this.dp.close();
  }
}

let kernel: Kernel | undefined;
const pinRoot = `/sys/fs/bpf/sluice-diff-${process.pid}-${randomBytes(4).toString("hex")}`;
let nextEndpointId = 1;

describe("differential: reference evaluator == compiled lookup == kernel", () => {
  before(() => {
    if (privilegeProblem()) return;
    kernel = new Kernel(pinRoot);
  });
  after(() => {
    kernel?.close();
    rmSync(pinRoot, { recursive: true, force: true });
  });

  test("random policies and probes, v4 and v6, both allow-localhost modes", (t) => {
    if (!requirePrivileged(t)) return;
    const k = kernel;
    if (!k) throw new Error("datapath not loaded");
    let clusters = 0;
    let checks = 0;
    let denies = 0;
    // Verdicts the allow-localhost entry decided, and clusters per mode.
    let localhost = 0;
    let spoofed = 0;
    const modes = { always: 0, policy: 0 };
    const result = fc.check(
      fc.property(cluster, allowLocalhostMode, (c, allowLocalhost) => {
        const inputs = inputsFromObjects(asObjects(c));
        const ref = new ReferenceEvaluator(inputs, { allowLocalhost, hostAddresses: NODE_ADDRESSES });
        // Fresh endpoint ids for every cluster: conntrack state of earlier clusters is never consulted.
        const endpointIds = new Map<string, number>(
          c.pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, nextEndpointId++]),
        );
        const ips = [...c.pods.flatMap((p) => podIps(p)), ...EXTERNAL_IPS];
        for (const node of NODES) {
          const compiled = compile(inputs, {
            node,
            endpointIds,
            allowLocalhost,
            hostAddresses: NODE_ADDRESSES.get(node),
          });
          assert.deepEqual(compiled.errors, [], `compile errors on ${node}`);
          const state = compiled.state;
          for (const ep of state.endpoints) {
            const pod = c.pods.find((p) => `${p.metadata.namespace}/${p.metadata.name}` === ep.key);
            assert.ok(pod, `endpoint ${ep.key} is a pod of the cluster`);
            k.install(state, { ...ep, addresses: podIps(pod) });
            const podAddresses = new Set(c.pods.flatMap((p) => podIps(p)));
            for (const own of podIps(pod))
              for (const other of ips) {
                if (other === own || isV6(own) !== isV6(other)) continue;
                for (const p of isV6(own) ? V6_PROBES : V4_PROBES)
                  for (const dir of ["egress", "ingress"] as const) {
                    const [src, dst] = dir === "egress" ? [own, other] : [other, own];
                    const want = ref.evaluate(src, dst, p.proto, p.port)[dir];
                    const peer = lookupIdentity(state.ipcache, other);
                    const looked = lookupVerdict(ep.policy, dir, peer, p.proto, p.port);
                    const sim = looked.verdict;
                    if (looked.entry?.ruleId === ReservedRuleId.LOCALHOST) localhost++;
                    const got = k.verdict(dir, frame(src, dst, p));
                    const where = `${ep.key} ${dir} ${src} -> ${dst} proto ${p.proto} port ${p.port} (peer identity ${peer})`;
                    assert.equal(sim, want, `lookup vs reference: ${where}`);
                    assert.equal(got, want, `kernel vs reference: ${where}`);
                    if (!PORTED.has(p.proto) && got === "allow")
                      k.forgetPortless(ep.id, dir, p.proto, src, dst);
                    checks++;
                    if (got === "deny") denies++;
                  }
                // The egress probe again, from the other pod's address instead of its own.
                if (!podAddresses.has(other) || podIps(pod).includes(other)) continue;
                for (const p of isV6(own) ? V6_PROBES : V4_PROBES) {
                  const where = `${ep.key} egress from borrowed ${other} -> ${own} proto ${p.proto} port ${p.port}`;
                  assert.equal(k.verdict("egress", frame(other, own, p)), "deny", `kernel: ${where}`);
                  spoofed++;
                }
              }
          }
        }
        clusters++;
        modes[allowLocalhost]++;
      }),
      {
        numRuns: RUNS,
        interruptAfterTimeLimit: SECONDS * 1000,
        markInterruptAsFailure: false,
        ...(SEED === undefined ? {} : { seed: SEED }),
      },
    );
    if (result.failed) {
      throw new Error(
        `${fc.defaultReportMessage(result)}\n${String(result.errorInstance)}\nreplay: SLUICE_DIFF_SEED=${result.seed} node --test ${import.meta.filename}`,
      );
    }
    t.diagnostic(
      `${clusters} clusters (allow-localhost always ${modes.always}, policy ${modes.policy}), ${checks} verdicts (${denies} denies, ${localhost} by the allow-localhost entry) agreed, ${spoofed} probes from borrowed addresses dropped; seed ${result.seed}`,
    );
    assert.ok(spoofed > 0, "probes from borrowed addresses were sent");
    assert.ok(clusters >= 5, `only ${clusters} clusters checked in ${SECONDS} s`);
    // A test that only ever saw one verdict proves little.
    assert.ok(denies > 0 && denies < checks, `verdicts were all the same (${denies} denies of ${checks})`);
    assert.ok(modes.always > 0 && modes.policy > 0, "both allow-localhost modes were checked");
    assert.ok(localhost > 0, "the allow-localhost entry decided some verdicts");
  });
});
