// Lease-based leader election against a real API server: in process (takeover when the lease is
// taken away, release on stop) and with two `sluice operator` processes where the leader is killed
// with SIGKILL while pods are being created: the standby takes over within the lease duration, no
// label set gets two identities and the policy status written before does not flap.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { openSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { IDENTITY_TOMBSTONE_LABEL, labelSetHash } from "../../operator/src/identity/allocator.ts";
import { securityLabels } from "../../operator/src/identity/labels.ts";
import { publishNodeStatus } from "../../operator/src/kube/node-status.ts";
import { rawRequest } from "../../operator/src/kube/raw.ts";
import { LeaderElector } from "../../operator/src/operator/leader-election.ts";
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
  spec: { holderIdentity?: string | null; leaseTransitions?: number };
}

describe("leader election (real API server)", () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster();
  });
  after(async () => {
    await c?.stop();
  });
  const holder = async (name: string): Promise<string> => {
    try {
      const l = await rawRequest<LeaseJson>(
        c.kc,
        "GET",
        `/apis/coordination.k8s.io/v1/namespaces/default/leases/${name}`,
      );
      return l.spec.holderIdentity ?? "";
    } catch {
      return "";
    }
  };

  test("one leader; a replica whose lease is taken stops at once; stop() releases for a fast handover", async () => {
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
    a.e.start();
    await waitFor("a leads", () => a.e.isLeader());
    const b = mk("b");
    b.e.start();
    await sleep(1000);
    assert.equal(b.e.isLeader(), false, "b must not lead while a renews");
    assert.equal(await holder("le-unit"), "a");

    // Someone else takes the lease (as if a's renewals had been lost): a must stop leading at once.
    const lease = await rawRequest<LeaseJson & { metadata: object }>(
      c.kc,
      "GET",
      "/apis/coordination.k8s.io/v1/namespaces/default/leases/le-unit",
    );
    const t0 = performance.now();
    await rawRequest(c.kc, "PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/le-unit", {
      ...lease,
      spec: {
        ...lease.spec,
        holderIdentity: "intruder",
        renewTime: new Date().toISOString().replace("Z", "000Z"),
      },
    });
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
    const startReplica = (id: string) => {
      const log = openSync(join(c.api.kubeconfigPath, `../operator-${id}.log`), "a");
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
      opA.kill("SIGKILL");
      await waitFor("op-b leads", async () => (await holder("sluice-operator")) === "op-b", leaseMs * 3, 20);
      const takeoverMs = performance.now() - tKill;
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
        `# failover: SIGKILL → new leader in ${Math.round(takeoverMs)} ms (lease ${leaseMs} ms); ${created} pods, ${expected.size} sets, ${live.length} live identities, ${dups} duplicated; caught up ${Math.round(catchUpMs)} ms after churn\n`,
      );
      assert.ok(takeoverMs < leaseMs + 1500, `takeover took ${Math.round(takeoverMs)} ms`);
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
