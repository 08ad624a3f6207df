// Compiler benchmark: full compile of 10k policies × 10k identities for 100 local endpoints
// (target < 1 s) and one policy edit's delta (target < 10 ms), with heap use. The baseline is a
// trivial pass over the same inputs (every label of every object read once), so the ratio says how
// far the compiler is from just looking at its input.
// Run: node --expose-gc test/bench/compile.bench.ts
import type { NetworkPolicy, Pod } from "../../operator/src/api/k8s.ts";
import type { ClusterSecurityPolicy, SecurityPolicy } from "../../operator/src/api/types.generated.ts";
import {
  compile,
  IncrementalCompiler,
  inputsFromObjects,
  type PolicyInputs,
} from "../../operator/src/policy/index.ts";

const NAMESPACES = 100;
const APPS = 100; // per namespace: 10k identities
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

function build(): PolicyInputs {
  const objects: unknown[] = [];
  for (let n = 0; n < NAMESPACES; n++) {
    objects.push({ kind: "Namespace", metadata: { name: `ns${n}`, labels: { team: `t${n % 10}` } } });
    for (let a = 0; a < APPS; a++) {
      const pod: Pod = {
        kind: "Pod",
        metadata: {
          name: `app${a}-0`,
          namespace: `ns${n}`,
          labels: { app: `app${a}`, tier: `tier${a % 5}` },
        },
        // One pod per namespace on the local node: 100 local endpoints.
        spec: {
          nodeName: a === 0 ? "local" : `node${a % 20}`,
          containers: [{ ports: [{ name: "http", containerPort: 8080 }] }],
        },
        status: { podIP: `10.${n}.${a >> 8}.${(a & 255) + 1}` },
      };
      objects.push(pod);
      // 100 policies per namespace: 10k.
      const np: NetworkPolicy | SecurityPolicy =
        a % 2 === 0
          ? {
              kind: "NetworkPolicy",
              metadata: { name: `p${a}`, namespace: `ns${n}` },
              spec: {
                podSelector: { matchLabels: { app: `app${(a * 7) % APPS}` } },
                ingress: [
                  {
                    from: [{ podSelector: { matchLabels: { app: `app${(a + 1) % APPS}` } } }],
                    ports: [{ port: 8000 + a, endPort: 8010 + a }],
                  },
                  {
                    from: [
                      {
                        namespaceSelector: { matchLabels: { team: `t${a % 10}` } },
                        podSelector: { matchLabels: { tier: `tier${a % 5}` } },
                      },
                    ],
                    ports: [{ port: "http" }],
                  },
                ],
              },
            }
          : {
              kind: "SecurityPolicy",
              metadata: { name: `p${a}`, namespace: `ns${n}` },
              spec: {
                endpointSelector: { matchLabels: { app: `app${(a * 7) % APPS}` } },
                ingress: [
                  {
                    action: "Deny",
                    endpoints: [{ endpointSelector: { matchLabels: { app: `app${(a + 3) % APPS}` } } }],
                    ports: [{ port: 9000 + a, protocol: "TCP" }],
                  },
                ],
                egress: [
                  {
                    endpoints: [
                      { endpointSelector: { matchLabels: { tier: `tier${a % 5}` } }, namespaceSelector: {} },
                    ],
                    ports: [{ port: "http", protocol: "TCP" }],
                  },
                  { cidrs: [{ cidr: `192.168.${a}.0/24` }] },
                ],
              },
            };
      objects.push(np);
    }
  }
  const admin: ClusterSecurityPolicy = {
    kind: "ClusterSecurityPolicy",
    metadata: { name: "admin" },
    spec: {
      tier: "Admin",
      priority: 1,
      endpointSelector: {},
      ingress: [
        {
          action: "Allow",
          endpoints: [
            {
              namespaceSelector: { matchLabels: { team: "t0" } },
              endpointSelector: { matchLabels: { app: "app1" } },
            },
          ],
          ports: [{ port: 9100, protocol: "TCP" }],
        },
      ],
    },
  };
  objects.push(admin);
  return inputsFromObjects(objects);
}

function time<T>(f: () => T): { ms: number; value: T } {
  const t0 = performance.now();
  const value = f();
  return { ms: performance.now() - t0, value };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const inputs = build();
const policies =
  (inputs.networkPolicies?.length ?? 0) +
  (inputs.securityPolicies?.length ?? 0) +
  (inputs.clusterSecurityPolicies?.length ?? 0);

// Baseline: read every label and rule of the inputs once.
const baseline = median(
  Array.from(
    { length: 5 },
    () =>
      time(() => {
        let n = 0;
        for (const p of inputs.pods) n += Object.keys(p.metadata.labels ?? {}).length;
        for (const p of [...(inputs.networkPolicies ?? []), ...(inputs.securityPolicies ?? [])])
          n += JSON.stringify(p.spec).length;
        return n;
      }).ms,
  ),
);

gc();
const heap0 = process.memoryUsage().heapUsed;
const full = time(() => compile(inputs, { node: "local" }));
const heap1 = process.memoryUsage().heapUsed;
const fullRuns = [
  full.ms,
  ...Array.from({ length: 2 }, () => time(() => compile(inputs, { node: "local" })).ms),
];
const state = full.value.state;
const entries = state.endpoints.reduce((n, e) => n + e.policy.entries.length, 0);

gc();
const inc = new IncrementalCompiler(inputs, { node: "local" });
const edits: number[] = [];
let deltaOps = 0;
for (let i = 0; i < 20; i++) {
  // Edit a policy that selects the local endpoint of ns{i} (app0 is selected by p0: app(0*7 % 100)).
  const np = inputs.networkPolicies!.find(
    (p) => p.metadata.namespace === `ns${i}` && p.metadata.name === "p0",
  )!;
  const edited: NetworkPolicy = structuredClone(np);
  edited.spec.ingress![0].ports = [{ port: 7000 + i, endPort: 7100 + i }];
  const r = time(() => inc.apply({ type: "upsert", object: edited }));
  edits.push(r.ms);
  deltaOps += r.value.delta.endpoints.reduce((n, d) => n + d.upsert.length + d.remove.length, 0);
}
gc();
const heap2 = process.memoryUsage().heapUsed;

const rows: Array<[string, string, string, string]> = [
  ["trivial pass over inputs (baseline)", `${baseline.toFixed(1)} ms`, "1.0×", ""],
  [
    `full compile: ${policies} policies, ${inputs.identities.length} identities, ${state.endpoints.length} endpoints`,
    `${median(fullRuns).toFixed(0)} ms`,
    `${(median(fullRuns) / baseline).toFixed(1)}×`,
    `${entries} entries, ${state.ipcache.length} ipcache; heap +${((heap1 - heap0) / 2 ** 20).toFixed(0)} MiB`,
  ],
  [
    "one policy edit → delta (median of 20)",
    `${median(edits).toFixed(2)} ms`,
    `${(median(edits) / baseline).toFixed(2)}×`,
    `max ${Math.max(...edits).toFixed(2)} ms; ${(deltaOps / edits.length).toFixed(0)} map ops/edit; heap with incremental ${(heap2 / 2 ** 20).toFixed(0)} MiB`,
  ],
];
const w = [0, 1, 2, 3].map((i) =>
  Math.max(...rows.map((r) => r[i].length), ["what", "time", "× baseline", "notes"][i].length),
);
const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i])).join(" | ")} |`;
console.log(line(["what", "time", "× baseline", "notes"]));
console.log(line(w.map((n) => "-".repeat(n))));
for (const r of rows) console.log(line(r));
