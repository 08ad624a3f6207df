// Helper of test/bench/veth.bench.ts, run inside the bench's router namespace (nsenter --net): writes a
// policy of --rules entries for the two endpoints through the agent's map writer (MapSync) and attaches
// the datapath to both host-side interfaces with pinned tcx links, then exits (pins keep it enforcing).
// The flows the bench sends (A -> B, UDP --port, and TCP --tcp-port when given) are allowed; every other
// entry is for other identities.
// --attach-only: the maps are written already, only attach (or swap in) the programs of --object (a
// build with a feature compiled out, over the same pinned maps; default: the build's datapath).
// --host-routing on|off: the datapath configuration's SL_CFG_HOST_ROUTING (default off), written
// in either mode.
import { parseArgs } from "node:util";
import { enums } from "../../../operator/src/datapath/codec/layout.generated.ts";
import { attachOrReplace } from "../../../operator/src/datapath/kernel/links.ts";
import { loadDatapath } from "../../../operator/src/datapath/kernel/programs.ts";
import { MapSync } from "../../../operator/src/datapath/writer/sync.ts";
import type { EndpointState, PolicyEntry } from "../../../operator/src/policy/mapstate.ts";

const { values: o } = parseArgs({
  options: {
    "pin-root": { type: "string" },
    rules: { type: "string" },
    port: { type: "string" },
    "tcp-port": { type: "string" },
    "a-ip": { type: "string" },
    "b-ip": { type: "string" },
    "a-if": { type: "string" },
    "b-if": { type: "string" },
    object: { type: "string" },
    "attach-only": { type: "boolean", default: false },
    "host-routing": { type: "string", default: "off" },
  },
});
const need = (k: keyof typeof o): string => {
  const v = o[k];
  if (typeof v !== "string") throw new Error(`veth/enforce: --${k} is required`);
  return v;
};
const rules = Number(need("rules"));
if (o["host-routing"] !== "on" && o["host-routing"] !== "off")
  throw new Error(`veth/enforce: --host-routing is on or off, not ${o["host-routing"]}`);
const configFlags = o["host-routing"] === "on" ? enums.sl_config_flags.SL_CFG_HOST_ROUTING : 0;
const port = Number(need("port"));
const A_ID = 1000;
const B_ID = 1001;

// Filler entries for identities other than the peer's: half on each endpoint, both directions.
function filler(n: number, offset: number): PolicyEntry[] {
  const out: PolicyEntry[] = [];
  for (let i = 0; i < n; i++)
    out.push({
      direction: i % 2 === 0 ? "ingress" : "egress",
      identity: 2000 + offset + Math.floor(i / 20),
      protocol: i % 3 === 0 ? 6 : 17,
      port: 1000 + (i % 20) * 7,
      portPrefixLen: 16,
      verdict: i % 5 === 0 ? "deny" : "allow",
      ruleId: i + 1,
    });
  return out;
}

// The bench's UDP flow, and with --tcp-port its TCP stream (its replies are conntrack's).
const tcpPort = o["tcp-port"] === undefined ? undefined : Number(o["tcp-port"]);
const flows = (direction: "ingress" | "egress", identity: number): PolicyEntry[] =>
  [{ protocol: 17, port }, ...(tcpPort === undefined ? [] : [{ protocol: 6, port: tcpPort }])].map((f) => ({
    direction,
    identity,
    ...f,
    portPrefixLen: 16,
    verdict: "allow",
    ruleId: 0,
  }));
const aFlows = flows("egress", B_ID);
const bFlows = flows("ingress", A_ID);
const half = Math.floor((rules - aFlows.length - bFlows.length) / 2);
const a: EndpointState = {
  key: "bench/a",
  id: 1,
  identity: A_ID,
  policy: {
    defaultDeny: { ingress: true, egress: true },
    entries: [...aFlows, ...filler(half, 0)],
  },
};
const b: EndpointState = {
  key: "bench/b",
  id: 2,
  identity: B_ID,
  policy: {
    defaultDeny: { ingress: true, egress: true },
    entries: [...bFlows, ...filler(rules - aFlows.length - bFlows.length - half, 100_000)],
  },
};

const dp = loadDatapath({ pinRoot: need("pin-root"), ...(o.object && { objectPath: o.object }) });
const ifname = new Map([
  ["bench/a", need("a-if")],
  ["bench/b", need("b-if")],
]);

// Both hooks of both interfaces: a new pinned link, or the program swapped into the pinned one.
function attach(): void {
  for (const name of ifname.values())
    for (const hook of ["ingress", "egress"] as const)
      attachOrReplace(dp.addon, { pins: dp.pins, ifname: name, hook, progFd: dp.programFor(hook) });
}

// The policy through the map writer, and how long it took.
function write(): { policyWritten: number; syncMs: number } {
  const t0 = performance.now();
  const report = MapSync.adopt(dp.addon, dp.maps).apply(
    {
      ipcache: [
        { cidr: `${need("a-ip")}/32`, identity: A_ID },
        { cidr: `${need("b-ip")}/32`, identity: B_ID },
      ],
      endpoints: [a, b],
    },
    (ep) => dp.addon.ifNameToIndex(ifname.get(ep.key) ?? ""),
  );
  return { policyWritten: report.policyWritten, syncMs: performance.now() - t0 };
}

try {
  dp.maps.config.write({
    event_sample_allow: 0,
    event_sample_deny: 0,
    events_per_sec: 0,
    flags: configFlags,
  });
  if (o["attach-only"]) {
    attach();
    console.log(JSON.stringify({ attached: [...ifname.values()] }));
  } else {
    const w = write();
    attach();
    console.log(JSON.stringify({ entries: a.policy.entries.length + b.policy.entries.length, ...w }));
  }
} finally {
  dp.close();
}
