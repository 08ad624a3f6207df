// Lease-based leader election against a real API server: in process (takeover when the lease is
// taken away, release on stop) and with two `sluice operator` processes where the leader is killed
// with SIGKILL while pods are being created: the standby takes over within the lease duration, no
// label set gets two identities and the policy status written before does not flap.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { IDENTITY_TOMBSTONE_LABEL, labelSetHash } from "../../operator/src/identity/allocator.ts";
import { securityLabels } from "../../operator/src/identity/labels.ts";
import { publishNodeStatus } from "../../operator/src/kube/node-status.ts";
import { rawRequest } from "../../operator/src/kube/raw.ts";
import { isConflict } from "../../operator/src/kube/errors.ts";
import { LeaderElector } from "../../operator/src/controllers/leader-election.ts";
import {
  type Cluster,
  createNamespace,
  createPod,
  kubectlOk,
  listIdentities,
  repoRoot,
  startCluster,
  waitFor,
} from "./operator-helpers.ts";

interface LeaseJson {
  spec: {
    holderIdentity?: string | null;
    leaseTransitions?: number;
    renewTime?: string | null;
    acquireTime?: string | null;
  };
}

describe("leader election (real API server)", () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster();
  });
  after(async () => {
    await c?.stop();
  });
  const lease = (name: string): Promise<LeaseJson> =>
    rawRequest<LeaseJson>(c.kc, "GET", `/apis/coordination.k8s.io/v1/namespaces/default/leases/${name}`);
  const holder = async (name: string): Promise<string> => {
    try {
      return (await lease(name)).spec.holderIdentity ?? "";
    } catch {
      return "";
    }
  };

  test("one leader; a replica whose lease is taken stops at once; stop() releases for a fast handover", async (t) => {
    const events: string[] = [];
    const mk = (id: string) => {
      const state = { signal: undefined as AbortSignal | undefined };
      const e = new LeaderElector(c.kc, {
        namespace: "default",
        name: "le-unit",
        identity: id,
        leaseDurationMs: 2000,
        renewDeadlineMs: 1400,
        retryPeriodMs: 200,
        onStartedLeading: (s) => {
          state.signal = s;
          events.push(`${id}:start`);
        },
        onStoppedLeading: () => events.push(`${id}:stop`),
      });
      return { e, state };
    };
    const a = mk("a");
    const b = mk("b");
    // Also when an assertion fails: a campaigning elector keeps the test process alive.
    t.after(() => Promise.all([a.e.stop(), b.e.stop()]));
    a.e.start();
    await waitFor("a leads", () => a.e.isLeader());
    b.e.start();
    // Longer than the renew deadline: a leader that failed to renew would have stopped by now.
    await sleep(2500);
    assert.equal(b.e.isLeader(), false, "b must not lead while a renews");
    assert.deepEqual(events, ["a:start"], "a leads without interruption while it renews");
    assert.equal(await holder("le-unit"), "a");

    // Someone else takes the lease (as if a's renewals had been lost): a must stop leading at once.
    // a renews every 200 ms: a renewal between the read and the write makes it a conflict, and the
    // intruder reads again, as any client of an optimistic-concurrency API does.
    const path = "/apis/coordination.k8s.io/v1/namespaces/default/leases/le-unit";
    let t0 = 0;
    for (let attempt = 0; ; attempt++) {
      const lease = await rawRequest<LeaseJson & { metadata: object }>(c.kc, "GET", path);
      t0 = performance.now();
      try {
        await rawRequest(c.kc, "PUT", path, {
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: "intruder",
            renewTime: new Date().toISOString().replace("Z", "000Z"),
          },
        });
        break;
      } catch (err) {
        if (!isConflict(err) || attempt >= 20) throw err;
      }
    }
    await waitFor("a stops leading", () => a.state.signal?.aborted, 3000, 5);
    const lostMs = performance.now() - t0;
    assert.ok(lostMs < 600, `a noticed the loss after ${Math.round(lostMs)} ms (retry period 200 ms)`);
    assert.ok(events.includes("a:stop"));
    // The intruder never renews: after the lease duration one of a and b takes over.
    await waitFor("a or b leads again", () => a.e.isLeader() || b.e.isLeader(), 5000);
    const [leader, standby] = a.e.isLeader() ? [a, b] : [b, a];
    assert.equal(standby.e.isLeader(), false);

    // Graceful stop releases: the standby acquires within about one retry period, not a lease duration.
    const t1 = performance.now();
    await leader.e.stop();
    await waitFor("standby leads", () => standby.e.isLeader(), 3000, 5);
    const handoverMs = performance.now() - t1;
    process.stdout.write(
      `# lease taken away → leader stopped in ${Math.round(lostMs)} ms; release → handover in ${Math.round(handoverMs)} ms\n`,
    );
    assert.ok(handoverMs < 1000, `handover after release took ${Math.round(handoverMs)} ms`);
    await standby.e.stop();
    assert.equal(await holder("le-unit"), "");
  });

  test("two operator processes: SIGKILL the leader during pod churn → takeover within the lease duration, no duplicate identities, no status flapping", async () => {
    const leaseMs = 3000;
    const procs: ChildProcess[] = [];
    const logOf = (id: string) => join(c.api.kubeconfigPath, `../operator-${id}.log`);
    const startReplica = (id: string) => {
      const log = openSync(logOf(id), "a");
      const p = spawn(
        join(repoRoot, "bin/sluice"),
        [
          "operator",
          "--kubeconfig",
          c.api.kubeconfigPath,
          "--lease-namespace",
          "default",
          "--lease-duration",
          `${leaseMs}ms`,
          "--identity-gc-grace",
          "10m",
          "--id",
          id,
          // Two replicas on one machine: each its own free port, not both :9963.
          "--metrics-addr",
          "127.0.0.1:0",
        ],
        { stdio: ["ignore", log, log] },
      );
      procs.push(p);
      return p;
    };
    try {
      await createNamespace(c.clients, "shop");
      await createNamespace(c.clients, "churn");
      await createPod(c.clients, "shop", "web-1", { app: "web" }, "n1");
      const opA = startReplica("op-a");
      await waitFor("op-a leads", async () => (await holder("sluice-operator")) === "op-a", 20_000);
      startReplica("op-b");
      // A standby only counts once it runs and has seen the lease (a process takes a second to boot).
      await waitFor("op-b stands by", async () =>
        readFileSync(logOf("op-b"), "utf8").includes('"leader":"op-a"'),
      );

      // A policy enforced everywhere: its status must not change across the failover.
      await kubectlOk(
        ["apply", "-f", "-"],
        c.api.kubeconfigPath,
        "apiVersion: sluice.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  endpointSelector: {matchLabels: {app: web}}\n  ingress: [{}]\n",
      );
      const getP = async () =>
        JSON.parse(
          await kubectlOk(["get", "securitypolicy", "p", "-n", "shop", "-o", "json"], c.api.kubeconfigPath),
        );
      const uid = (await getP()).metadata.uid;
      await publishNodeStatus(c.clients, "n1", {
        datapathVersion: "t",
        endpoints: 1,
        enforced: [{ uid, generation: 1 }],
      });
      const enforced = await waitFor("p enforced", async () => {
        const x = await getP();
        return x.status?.conditions?.some(
          (k: { type: string; status: string }) => k.type === "Enforced" && k.status === "True",
        )
          ? x
          : undefined;
      });
      await waitFor("web identity", async () => (await listIdentities(c.clients)).length >= 1);

      // Pod churn with new label sets before, during and after the kill.
      let stop = false;
      let created = 0;
      const churn = (async () => {
        for (let i = 0; !stop; i++) {
          await createPod(c.clients, "churn", `c${i}`, { app: `set${i % 40}` });
          created++;
          await sleep(25);
        }
      })();
      await sleep(800);
      const tKill = performance.now();
      const leadsA = readFileSync(logOf("op-a"), "utf8").match(/started leading/g) ?? [];
      assert.equal(leadsA.length, 1, "op-a led without interruption until killed");
      opA.kill("SIGKILL");
      await new Promise((r) => opA.once("exit", r));
      // The dead leader's last renewal, as the lease records it (the same machine's clock writes both).
      const lastRenew = Date.parse((await lease("sluice-operator")).spec.renewTime ?? "");
      await waitFor("op-b leads", async () => (await holder("sluice-operator")) === "op-b", leaseMs * 3, 20);
      const takeoverMs = performance.now() - tKill;
      const acquired = Date.parse((await lease("sluice-operator")).spec.acquireTime ?? "");
      const afterRenewMs = acquired - lastRenew;
      await sleep(1500);
      stop = true;
      await churn;

      const expected = new Set<string>();
      for (let i = 0; i < Math.min(created, 40); i++) {
        expected.add(
          labelSetHash(
            securityLabels(
              { metadata: { namespace: "churn", labels: { app: `set${i}` } } },
              { metadata: {} },
            ),
          ),
        );
      }
      const t0 = performance.now();
      await waitFor(
        "identities for every churn set",
        async () => {
          const live = (await listIdentities(c.clients)).filter(
            (i) => i.metadata.labels?.[IDENTITY_TOMBSTONE_LABEL] !== "true",
          );
          const hashes = new Set(live.map((i) => labelSetHash(i.spec.labels)));
          return [...expected].every((h) => hashes.has(h));
        },
        20_000,
      );
      const catchUpMs = performance.now() - t0;
      const live = (await listIdentities(c.clients)).filter(
        (i) => i.metadata.labels?.[IDENTITY_TOMBSTONE_LABEL] !== "true",
      );
      const perHash = new Map<string, number>();
      for (const i of live)
        perHash.set(labelSetHash(i.spec.labels), (perHash.get(labelSetHash(i.spec.labels)) ?? 0) + 1);
      const dups = [...perHash.values()].filter((n) => n > 1).length;
      process.stdout.write(
        `# failover: SIGKILL → new leader in ${Math.round(takeoverMs)} ms, ${afterRenewMs} ms after the last renewal (lease ${leaseMs} ms); ${created} pods, ${expected.size} sets, ${live.length} live identities, ${dups} duplicated; caught up ${Math.round(catchUpMs)} ms after churn\n`,
      );
      // The standby counts the lease from its last poll before the renewal and wakes at expiry: the
      // takeover lands within the lease duration of the last renewal (request latency aside), so
      // within it of the kill too, plus the latency of noticing it here.
      assert.ok(afterRenewMs <= leaseMs + 100, `acquired ${afterRenewMs} ms after the last renewal`);
      assert.ok(takeoverMs < leaseMs + 300, `takeover took ${Math.round(takeoverMs)} ms after the kill`);
      assert.equal(dups, 0);
      const after = await getP();
      assert.equal(
        after.metadata.resourceVersion,
        enforced.metadata.resourceVersion,
        "the new leader rewrote an unchanged status",
      );
    } finally {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
      await Promise.all(
        procs.map((p) =>
          p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once("exit", r)) : undefined,
        ),
      );
    }
  });
});
