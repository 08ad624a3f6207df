// The agent's operability against a real kube-apiserver on a network-namespace lab: its stderr is one
// JSON object per line with level, time, msg, component and node, and one summary line per pass with
// its timings; /metrics moves with what happens (a policy apply is observed by the implementation-delay
// histogram, a denied probe by the datapath's denied-packets counter); /healthz and /readyz answer 200
// once it enforces, and /readyz is 503 with the reason while the caches cannot sync.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { createLabCluster, kubectlOk } from "../../operator/src/lab/cluster-setup.ts";
import { NODE, NODE_FLAGS, SLUICE_MAIN } from "../../operator/src/lab/children.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import type { Lab } from "../../operator/src/lab/lab.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";
import { DEMO_POLICIES, DEMO_TOPOLOGY, expectedMatrix } from "../support/kube-lab.ts";
import { privilegeProblem } from "../support/privileged.ts";
import { parseSamples } from "../support/prometheus.ts";

const skip = privilegeProblem();
if (skip && process.env.CI === "true")
  throw new Error(`agent-observe integration cannot run under CI: ${skip}`);

let api: ApiServer | undefined;
let lab: Lab | undefined;
let logs: string;

before(async () => {
  if (skip) return;
  logs = mkdtempSync(join(tmpdir(), "sluice-agent-observe-"));
  api = await startApiServer();
  lab = await createLabCluster(api, loadObjects([DEMO_TOPOLOGY]), { agentLogDir: logs });
  for (const n of lab.plan.nodes) await lab.startKubeAgent(n.name, api.kubeconfigPath);
});

after(async () => {
  await lab?.destroy();
  await api?.stop();
  if (logs) rmSync(logs, { recursive: true, force: true });
});

type LogLine = Record<string, unknown>;

function agentLog(node: string): LogLine[] {
  const text = readFileSync(join(logs, `agent-${node}.log`), "utf8");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l, i) => {
      try {
        return JSON.parse(l) as LogLine;
      } catch {
        throw new Error(`agent-${node}.log line ${i + 1} is not JSON: ${l}`);
      }
    });
}

// Sum of a metric's samples whose labels include `labels` (Prometheus text format).
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  const matching = parseSamples(text).filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  assert.ok(matching.length > 0, `${name}${JSON.stringify(labels)} is exported`);
  return matching.reduce((sum, s) => sum + s.value, 0);
}

async function metricsOfAllAgents(): Promise<string[]> {
  return Promise.all(
    lab!.plan.nodes.map(async (n) => {
      const r = await lab!.agentHttp(n.name, "/metrics");
      assert.equal(r.status, 200, `${n.name} /metrics`);
      return r.body;
    }),
  );
}

const total = (texts: string[], name: string, labels?: Record<string, string>) =>
  texts.reduce((s, t) => s + metric(t, name, labels), 0);

test("stderr is JSON lines with level, time, msg, component and node; one summary line per pass", {
  skip,
}, () => {
  for (const n of lab!.plan.nodes) {
    const lines = agentLog(n.name);
    assert.ok(lines.length > 0, `${n.name} logged`);
    for (const l of lines) {
      assert.equal(typeof l.level, "string", JSON.stringify(l));
      assert.ok(!Number.isNaN(Date.parse(String(l.time))), `time: ${JSON.stringify(l)}`);
      assert.equal(typeof l.msg, "string", JSON.stringify(l));
      assert.equal(l.component, "agent");
      assert.equal(l.node, n.name);
    }
    const msgs = lines.map((l) => l.msg);
    assert.ok(msgs.includes("caches synced"), `${n.name}: ${msgs.join(" | ")}`);
    assert.ok(msgs.includes(`agent ready on node ${n.name}`), `${n.name}: ${msgs.join(" | ")}`);
    const pass = lines.find((l) => l.msg === "reconciled");
    assert.ok(pass, `${n.name}: a pass summary`);
    assert.equal(pass.full, true, "the first pass rebuilds everything");
    for (const f of [
      "keys",
      "endpoints",
      "policy_written",
      "compile_ms",
      "resolve_ms",
      "sync_ms",
      "total_ms",
    ])
      assert.equal(typeof pass[f], "number", `${f} in ${JSON.stringify(pass)}`);
    const served = lines.find((l) => l.msg === "serving /metrics, /healthz and /readyz");
    assert.match(String(served?.address), /^127\.0\.0\.1:\d+$/);
  }
});

test("/healthz and /readyz answer ok once the agent enforces", { skip }, async () => {
  for (const n of lab!.plan.nodes) {
    assert.deepEqual(await lab!.agentHttp(n.name, "/healthz"), { status: 200, body: "ok\n" });
    const ready = await lab!.agentHttp(n.name, "/readyz?verbose");
    assert.equal(ready.status, 200, ready.body);
    assert.match(ready.body, /\[\+\]policy-written ok/);
  }
});

test("/metrics moves: a policy apply is an implementation delay, a denied probe a denied packet", {
  skip,
}, async (t) => {
  const before = await metricsOfAllAgents();
  const delays0 = total(before, "sluice_agent_policy_implementation_delay_seconds_count");
  const passes0 = total(before, "sluice_agent_reconcile_duration_seconds_count");
  const denied0 = total(before, "sluice_datapath_packets_total", { verdict: "denied" });
  assert.ok(total(before, "sluice_agent_endpoints_enforced") > 0, "endpoints enforced");
  assert.ok(total(before, "sluice_datapath_map_entries") > 0, "map entries");
  assert.ok(total(before, "sluice_datapath_map_capacity_entries") > 0, "map capacity");

  await kubectlOk(["apply", "-f", DEMO_POLICIES], api!.kubeconfigPath);
  const want = expectedMatrix(loadObjects([DEMO_TOPOLOGY, DEMO_POLICIES]));
  const denied = want.filter((r) => r.verdict === "deny");
  assert.ok(denied.length > 0, "the samples deny something");
  // Probes until the verdicts are the compiler's: the last round's denied probes were dropped.
  const t0 = Date.now();
  for (;;) {
    const got = (await lab!.probe()).results;
    const deniedNow = got.filter((r) => r.verdict === "deny").length;
    if (deniedNow === denied.length || Date.now() - t0 > 30_000) break;
    await new Promise((r) => setTimeout(r, 200));
  }

  const afterApply = await metricsOfAllAgents();
  const delays = total(afterApply, "sluice_agent_policy_implementation_delay_seconds_count");
  assert.ok(delays > delays0, `implementation delays observed: ${delays0} → ${delays}`);
  // Six policy files; every node sees each policy that selects one of its endpoints.
  assert.ok(delays - delays0 >= 6, `at least one per policy: ${delays - delays0}`);
  assert.ok(
    total(afterApply, "sluice_datapath_map_entries") > total(before, "sluice_datapath_map_entries"),
    "the policies' entries",
  );
  const slow = total(afterApply, "sluice_agent_policy_implementation_delay_seconds_bucket", { le: "10" });
  assert.equal(slow, delays, "every policy implemented within 10 s");
  assert.ok(total(afterApply, "sluice_agent_reconcile_duration_seconds_count") > passes0, "passes counted");
  const denied1 = total(afterApply, "sluice_datapath_packets_total", { verdict: "denied" });
  t.diagnostic(
    `implementation delays ${delays0} → ${delays}, sum ${total(afterApply, "sluice_agent_policy_implementation_delay_seconds_sum").toFixed(4)} s; denied packets ${denied0} → ${denied1}`,
  );
  assert.ok(denied1 >= denied0 + denied.length, `denied packets: ${denied0} → ${denied1}`);
  assert.ok(total(afterApply, "sluice_datapath_bytes_total", { verdict: "denied" }) > 0, "denied bytes");

  // The passes that wrote the policies logged at info with their timings, not full rebuilds.
  const passes = lab!.plan.nodes.flatMap((n) => agentLog(n.name).filter((l) => l.msg === "reconciled"));
  assert.ok(
    passes.some((p) => p.full === false && Number(p.policy_written) > 0 && typeof p.total_ms === "number"),
    JSON.stringify(passes),
  );
});

test("/readyz is 503 with the reason while the caches cannot sync; /healthz stays ok", {
  skip,
}, async (t) => {
  // An agent on the host's own network namespace for a node with no pods, whose API server is a
  // closed port: it loads its datapath under its own root (removed after) and waits for caches.
  const dir = mkdtempSync(join(tmpdir(), "sluice-agent-observe-dead-"));
  const root = `/sys/fs/bpf/sluice-test-observe-${process.pid}`;
  const kubeconfig = join(dir, "kubeconfig");
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        { name: "dead", cluster: { server: "https://127.0.0.1:1", "insecure-skip-tls-verify": true } },
      ],
      users: [{ name: "u", user: { token: "x" } }],
      contexts: [{ name: "c", context: { cluster: "dead", user: "u" } }],
      "current-context": "c",
    }),
  );
  let child: ChildProcess | undefined;
  t.after(() => {
    if (child?.exitCode === null) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
  });
  child = spawn(
    NODE,
    [
      ...NODE_FLAGS,
      SLUICE_MAIN,
      "agent",
      "--node",
      "observe-nowhere",
      "--bpffs-root",
      root,
      "--kubeconfig",
      kubeconfig,
      "--metrics-addr",
      "127.0.0.1:0",
      "--log-level",
      "debug",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no server address logged:\n${stderr}`)), 30_000);
    child!.stderr!.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      const m = /"address":"(127\.0\.0\.1:\d+)"/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child!.on("exit", (code) => reject(new Error(`agent exited (${code}):\n${stderr}`)));
  });
  const get = async (path: string) => {
    const r = await fetch(`http://${address}${path}`);
    return { status: r.status, body: await r.text() };
  };
  const ready = await get("/readyz");
  assert.equal(ready.status, 503, ready.body);
  assert.match(ready.body, /\[-\]policy-written failed: the API caches have not synced yet/);
  assert.deepEqual(await get("/healthz"), { status: 200, body: "ok\n" });
  // The informers' failures are counted by resource (each restarts its watch with backoff).
  const t0 = Date.now();
  for (;;) {
    const text = (await get("/metrics")).body;
    if (/^sluice_agent_api_watch_restarts_total\{resource="pods"\} [1-9]/m.test(text)) break;
    assert.ok(Date.now() - t0 < 20_000, `no watch restarts counted:\n${text}\n${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.match(stderr, /"msg":"watch failed; retrying, the maps keep the last good state"/);
});
