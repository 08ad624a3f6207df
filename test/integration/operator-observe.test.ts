// A real `sluice operator` process against a real API server, observed from outside as an operator
// of Sluice would: its stderr is JSON lines (level, time, msg, component); /readyz answers 503 with
// the reason while the CRDs are missing and 200 once its caches sync and it leads; /metrics moves
// with what the test does (new label sets → identities allocated and allocation latency observed,
// a policy → a status write, leadership → the leader gauge), and SIGTERM ends it cleanly.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { type KubeClients, loadKubeConfig, makeClients } from "../../operator/src/kube/client.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";
import { parseSamples } from "../support/prometheus.ts";
import {
  applyCrds,
  createNamespace,
  createPod,
  kubectlOk,
  listIdentities,
  repoRoot,
  waitFor,
} from "./operator-helpers.ts";

interface LogLine {
  level: string;
  time: string;
  msg: string;
  component: string;
  [field: string]: unknown;
}

describe("sluice operator: JSON logs, /metrics, /healthz, /readyz (real API server, real process)", () => {
  let api: ApiServer;
  let clients: KubeClients;
  let proc: ChildProcess;
  let exited: Promise<number | null>;
  const raw: string[] = [];
  let base = "";
  const run = `o${Date.now().toString(36)}`;

  const logs = (): LogLine[] => raw.map((l) => JSON.parse(l) as LogLine);
  const get = async (path: string) => {
    const res = await fetch(`${base}${path}`);
    return { status: res.status, body: await res.text() };
  };
  const metric = async (name: string, labels: Record<string, string> = {}): Promise<number | undefined> => {
    const { status, body } = await get("/metrics");
    assert.equal(status, 200);
    return parseSamples(body).find(
      (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    )?.value;
  };

  before(async () => {
    // Without the CRDs first (when this test starts the server): readiness must say why it waits.
    api = await startApiServer();
    clients = makeClients(loadKubeConfig(api.kubeconfigPath));
    proc = spawn(
      join(repoRoot, "bin/sluice"),
      [
        "operator",
        "--kubeconfig",
        api.kubeconfigPath,
        "--lease-namespace",
        "default",
        "--lease-name",
        `observe-${run}`,
        "--lease-duration",
        "3s",
        "--id",
        `observe-${run}`,
        "--metrics-addr",
        "127.0.0.1:0",
        "--log-level",
        "debug",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    exited = new Promise((resolve) => proc.once("exit", (code) => resolve(code)));
    createInterface({ input: proc.stderr! }).on("line", (l) => raw.push(l));
    const start = await waitFor("the operator's start line", () =>
      raw
        .map((l) => {
          try {
            return JSON.parse(l) as LogLine;
          } catch {
            return undefined;
          }
        })
        .find((l) => l?.msg === "sluice operator starting"),
    );
    const addr = String(start.metrics_addr);
    assert.match(addr, /^127\.0\.0\.1:\d+$/);
    base = `http://${addr}`;
  });

  after(async () => {
    if (proc && proc.exitCode === null) {
      proc.kill("SIGKILL");
      await exited;
    }
    await api?.stop();
  });

  test("/healthz is 200 at once; /readyz is 503 with its reason until the caches sync, then 200", async () => {
    const live = await get("/healthz");
    assert.equal(live.status, 200, live.body);
    assert.equal(live.body, "ok\n");
    if (!api.external) {
      const ready = await get("/readyz");
      assert.equal(ready.status, 503, ready.body);
      assert.match(ready.body, /\[-\]caches failed: not synced: .*securityidentities/);
      await waitFor(
        "a failed watch counted",
        async () =>
          ((await metric("sluice_operator_api_errors_total", {
            resource: "securityidentities",
            verb: "list_watch",
          })) ?? 0) >= 1,
      );
    }
    await applyCrds(api.kubeconfigPath);
    await waitFor("/readyz 200", async () => (await get("/readyz")).status === 200, 40_000, 100);
    const verbose = await get("/readyz?verbose");
    assert.match(verbose.body, /\[\+\]caches ok\n\[\+\]leader-election ok\nok\n/);
  });

  test("the leader gauge is 1 once it leads, after one transition to leader", async () => {
    await waitFor("leader gauge 1", async () => (await metric("sluice_operator_leader")) === 1);
    assert.equal(await metric("sluice_operator_leader_transitions_total", { to: "leader" }), 1);
    assert.equal(await metric("sluice_operator_leader_transitions_total", { to: "standby" }), 0);
  });

  test("pods with new label sets raise identities allocated, the allocation histogram and the gauge", async () => {
    const hist = "sluice_operator_identity_allocation_duration_seconds_count";
    const allocated0 = (await metric("sluice_operator_identities_allocated_total")) ?? 0;
    const observed0 = (await metric(hist)) ?? 0;
    const ns = `obs-${run}`;
    await createNamespace(clients, ns);
    // Three pods, two label sets: two identities, two latencies.
    await createPod(clients, ns, "a-1", { app: `a-${run}` });
    await createPod(clients, ns, "a-2", { app: `a-${run}` });
    await createPod(clients, ns, "b-1", { app: `b-${run}` });
    await waitFor("two identities allocated", async () => {
      const allocated = (await metric("sluice_operator_identities_allocated_total")) ?? 0;
      return allocated >= allocated0 + 2 && ((await metric(hist)) ?? 0) >= observed0 + 2;
    });
    const live = (await listIdentities(clients)).filter(
      (i) => i.metadata.labels?.["sluice.dev/tombstone"] !== "true",
    );
    await waitFor(
      "the identities gauge matches the API",
      async () => (await metric("sluice_operator_identities")) === live.length,
    );
    // Settled: no more than the two new label sets were allocated.
    assert.equal(await metric("sluice_operator_identities_allocated_total"), allocated0 + 2);
    assert.equal(await metric(hist), observed0 + 2);
    const sum = (await metric("sluice_operator_identity_allocation_duration_seconds_sum")) ?? -1;
    assert.ok(sum > 0 && sum < 30, `allocation latency sum ${sum} s`);
  });

  test("a policy applied raises the ok status writes; the controllers' queue metrics exist", async () => {
    const writes0 = (await metric("sluice_operator_policy_status_writes_total", { result: "ok" })) ?? 0;
    const ns = `obs-${run}`;
    await kubectlOk(
      ["apply", "-f", "-"],
      api.kubeconfigPath,
      `apiVersion: sluice.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: p, namespace: ${ns}}\nspec:\n  endpointSelector: {matchLabels: {app: a-${run}}}\n  ingress: [{}]\n`,
    );
    await waitFor(
      "a status write",
      async () =>
        ((await metric("sluice_operator_policy_status_writes_total", { result: "ok" })) ?? 0) > writes0,
    );
    const p = JSON.parse(
      await kubectlOk(["get", "securitypolicy", "p", "-n", ns, "-o", "json"], api.kubeconfigPath),
    ) as { status?: { conditions?: Array<{ type: string; status: string }> } };
    assert.equal(p.status?.conditions?.find((c) => c.type === "Accepted")?.status, "True");
    for (const controller of ["identity", "status"]) {
      assert.notEqual(await metric("sluice_operator_workqueue_depth", { controller }), undefined, controller);
      assert.equal(await metric("sluice_operator_workqueue_retries_total", { controller }), 0, controller);
      assert.ok(
        ((await metric("sluice_operator_reconcile_duration_seconds_count", { controller, result: "ok" })) ??
          0) > 0,
        controller,
      );
    }
    // The process metrics of prom-client's defaults are there too.
    assert.ok(((await metric("process_resident_memory_bytes")) ?? 0) > 0);
  });

  test("SIGTERM: exits 0; every stderr line is a JSON object with level, time, msg, component", async (t) => {
    proc.kill("SIGTERM");
    assert.equal(await exited, 0);
    const lines = logs();
    const perMsg = new Map<string, number>();
    for (const l of lines) perMsg.set(`${l.level} ${l.msg}`, (perMsg.get(`${l.level} ${l.msg}`) ?? 0) + 1);
    t.diagnostic(`log lines: ${[...perMsg].map(([m, n]) => `${m} ×${n}`).join("; ")}`);
    assert.ok(lines.length >= 4, raw.join("\n"));
    for (const l of lines) {
      assert.equal(typeof l.level, "string", JSON.stringify(l));
      assert.ok(!Number.isNaN(Date.parse(l.time)), JSON.stringify(l));
      assert.equal(typeof l.msg, "string", JSON.stringify(l));
      assert.equal(l.component, "operator", JSON.stringify(l));
    }
    const msgs = lines.map((l) => l.msg);
    for (const m of ["sluice operator starting", "started leading", "stopping", "stopped"])
      assert.ok(msgs.includes(m), `${m} in ${msgs.join(" | ")}`);
    // Structured fields, not interpolated text: the allocation lines carry the identity number.
    const allocatedLines = lines.filter((l) => l.msg === "identity allocated");
    assert.ok(allocatedLines.length >= 2);
    for (const l of allocatedLines) {
      assert.equal(l.controller, "identity");
      assert.equal(typeof l.identity, "number");
    }
    const status = lines.find((l) => l.msg === "policy status written");
    assert.equal(status?.policy, `SecurityPolicy/obs-${run}/p`);
    if (!api.external) {
      const watch = lines.find((l) => l.msg === "watch failed; restarting with backoff");
      assert.equal(watch?.level, "warn");
      assert.equal(typeof watch?.err, "string");
    }
  });
});
