// The agent's side of the chained CNI plugin without a cluster: request parsing (every bad request
// names its field), and the CNI server's bookkeeping: an add waits until a pass enforces the endpoint
// on the declared interface with an identity, times out saying what was missing, a pod of another
// node is refused at once, declared addresses stand in while the pod's status has none, declarations
// survive a restart, and the socket speaks one line each way.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { CniRequestError, parseCniRequest } from "../../operator/src/agent/cni-protocol.ts";
import { CniServer, declarationsPath, type EndpointStatus } from "../../operator/src/agent/cni-server.ts";
import type { Pod } from "../../operator/src/api/k8s.ts";
import { createLogger } from "../../operator/src/observe/log.ts";
import { ReservedIdentity } from "../../operator/src/policy/mapstate.ts";

const ADD = {
  op: "add",
  containerId: "0123456789abcdef0123",
  namespace: "shop",
  pod: "web-1",
  podUid: "uid-1",
  interface: { name: "veth1234", index: 42 },
  ips: ["10.1.0.5/24", "fd00::5/64"],
  timeoutMs: 5000,
};

const line = (o: unknown) => JSON.stringify(o);

test("a valid add: addresses without prefix length, deduplicated", () => {
  const r = parseCniRequest(line({ ...ADD, ips: ["10.1.0.5/24", "10.1.0.5", "FD00::5/64"], extra: 1 }));
  assert.deepEqual(r, {
    op: "add",
    containerId: ADD.containerId,
    namespace: "shop",
    pod: "web-1",
    podUid: "uid-1",
    interface: { name: "veth1234", index: 42 },
    ips: ["10.1.0.5", "fd00::5"],
    timeoutMs: 5000,
  });
});

test("del needs neither interface nor addresses; podUid and timeoutMs are optional", () => {
  const r = parseCniRequest(line({ op: "del", containerId: "c", namespace: "shop", pod: "web-1" }));
  assert.deepEqual(r, { op: "del", containerId: "c", namespace: "shop", pod: "web-1", ips: [] });
});

test("bad requests: the error names the field", () => {
  const cases: [unknown, RegExp][] = [
    ["{", /^request: not JSON/],
    [[], /^request: must be a JSON object/],
    [{ ...ADD, op: "ADD" }, /^op: must be one of add, del, check, got "ADD"/],
    [{ ...ADD, containerId: "" }, /^containerId: required/],
    [{ ...ADD, containerId: 7 }, /^containerId: must be a string, got 7/],
    [{ ...ADD, namespace: undefined }, /^namespace: required/],
    [{ ...ADD, namespace: "Shop" }, /^namespace: not a Kubernetes namespace name, got "Shop"/],
    [{ ...ADD, pod: "web_1" }, /^pod: not a Kubernetes pod name/],
    [{ ...ADD, interface: undefined }, /^interface: required for add/],
    [{ ...ADD, op: "check", interface: undefined }, /^interface: required for check/],
    [{ ...ADD, interface: { name: "a/b", index: 1 } }, /^interface\.name: must be a Linux interface name/],
    [{ ...ADD, interface: { name: "x".repeat(16), index: 1 } }, /^interface\.name: /],
    [{ ...ADD, interface: { name: "veth1", index: 0 } }, /^interface\.index: must be a positive integer/],
    [{ ...ADD, interface: { name: "veth1", index: "3" } }, /^interface\.index: .*got "3"/],
    [{ ...ADD, ips: [] }, /^ips: at least one address is required for add/],
    [{ ...ADD, ips: "10.1.0.5" }, /^ips: must be an array/],
    [{ ...ADD, ips: ["10.1.0.5/24", "10.1.0.300/24"] }, /^ips\[1\]: not an IP address, got "10.1.0.300\/24"/],
    [{ ...ADD, ips: ["10.1.0.5/33"] }, /^ips\[0\]: prefix length must be 0-32/],
    [{ ...ADD, ips: [5] }, /^ips\[0\]: must be a string, got 5/],
    [{ ...ADD, timeoutMs: -1 }, /^timeoutMs: must be an integer from 1 to/],
  ];
  for (const [input, want] of cases) {
    const text = typeof input === "string" ? input : line(input);
    assert.throws(
      () => parseCniRequest(text),
      (e: Error) => e instanceof CniRequestError && want.test(e.message),
      text,
    );
  }
});

function pod(over: { uid?: string; node?: string; ips?: string[] } = {}): Pod {
  const ips = over.ips ?? [];
  return {
    kind: "Pod",
    metadata: { name: "web-1", namespace: "shop", uid: over.uid ?? "uid-1", labels: { app: "web" } },
    spec: { nodeName: over.node ?? "n1" },
    status: ips.length
      ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })), phase: "Pending" }
      : { phase: "Pending" },
  };
}

interface Harness {
  dir: string;
  server: CniServer;
  pods: Map<string, Pod>;
  reconciled: string[];
  // The server's log lines, parsed.
  logs: Record<string, unknown>[];
}

async function harness(
  t: { after(fn: () => void): void },
  dir = mkdtempSync(join(tmpdir(), "sluice-cni-unit-")),
): Promise<Harness> {
  const pods = new Map<string, Pod>();
  const reconciled: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const logger = await createLogger({
    level: "debug",
    format: "json",
    base: {},
    destination: { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) },
  });
  const server = new CniServer(join(dir, "cni.sock"), {
    node: "n1",
    logger,
    pod: (ns, name) => pods.get(`${ns}/${name}`),
    reconcile: (key) => reconciled.push(key),
  });
  t.after(() => {
    void server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, server, pods, reconciled, logs };
}

const enforced =
  (s: EndpointStatus | undefined) =>
  (key: string): EndpointStatus | undefined =>
    key === "shop/web-1" ? s : undefined;
const onVeth = { ifname: "veth1234", ifindex: 42 };

test("add waits for a pass that enforces the endpoint on the declared interface with an identity", async (t) => {
  const h = await harness(t);
  h.pods.set("shop/web-1", pod());
  let answered: unknown;
  const pending = h.server.handle(line(ADD)).then((r) => {
    answered = r;
    return r;
  });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(h.reconciled, ["shop/web-1"], "the endpoint is reconciled at once");
  // Declared addresses and interface stand in while the status has none.
  const view = h.server.podView(pod());
  assert.deepEqual(view.status?.podIPs, [{ ip: "10.1.0.5" }, { ip: "fd00::5" }]);
  assert.deepEqual(h.server.interfaceOf(pod()), onVeth);
  // Not while kubelet's addresses are there, nor for another pod of that name.
  assert.deepEqual(h.server.podView(pod({ ips: ["10.1.0.5"] })).status?.podIPs, [{ ip: "10.1.0.5" }]);
  assert.equal(h.server.podView(pod({ uid: "uid-0" })).status?.podIPs, undefined);
  assert.equal(h.server.interfaceOf(pod({ uid: "uid-0" })), undefined);

  h.server.settle(enforced(undefined));
  h.server.settle(enforced({ identity: ReservedIdentity.INIT, iface: onVeth }));
  h.server.settle(enforced({ identity: 300, iface: { ifname: "br0", ifindex: 7 } }));
  await new Promise((r) => setImmediate(r));
  assert.equal(answered, undefined, "no answer before the endpoint is enforced as declared");
  h.server.settle(enforced({ identity: 300, iface: onVeth }));
  assert.deepEqual(await pending, { ok: true });
  assert.equal(h.logs.length, 1);
  const { time, duration_ms, ...fields } = h.logs[0]!;
  assert.equal(typeof time, "string");
  assert.equal(typeof duration_ms, "number");
  assert.deepEqual(fields, {
    level: "info",
    msg: "cni add: ok",
    op: "add",
    endpoint: "shop/web-1",
    container: "0123456789ab",
    iface: "veth1234",
    ifindex: 42,
    ips: ["10.1.0.5", "fd00::5"],
  });
});

test("add times out saying what was missing", async (t) => {
  const h = await harness(t);
  const quick = { ...ADD, timeoutMs: 50 };
  let r = await h.server.handle(line(quick));
  assert.deepEqual(r, {
    ok: false,
    error: "the agent has not synced its caches with the API server yet (waited 50 ms)",
  });

  const p1 = h.server.handle(line(quick));
  h.server.settle(enforced(undefined));
  r = await p1;
  assert.equal(r.ok, false);
  assert.match((r as { error: string }).error, /^the pod is not in the agent's cache yet \(waited 50 ms\)$/);

  h.pods.set("shop/web-1", pod({ uid: "uid-0" }));
  const p2 = h.server.handle(line(quick));
  h.server.settle(enforced(undefined));
  assert.match(((await p2) as { error: string }).error, /holds the pod with UID uid-0, not uid-1/);

  h.pods.set("shop/web-1", pod());
  const p3 = h.server.handle(line(quick));
  h.server.settle(enforced({ identity: ReservedIdentity.INIT, iface: onVeth }));
  assert.match(((await p3) as { error: string }).error, /^no security identity yet/);
});

test("an endpoint the node's endpoint map has no place for: the add fails at once with the reason", async (t) => {
  const h = await harness(t);
  h.pods.set("shop/web-1", pod());
  const p = h.server.handle(line(ADD));
  const reason = "endpoint shop/web-1: the node's endpoint map is full (5 endpoints want its 4 places)";
  h.server.settle(enforced({ identity: 300, iface: onVeth, refused: reason }));
  assert.deepEqual(await p, { ok: false, error: reason });
});

test("a pod of another node is refused at once; del forgets only its own container's declaration", async (t) => {
  const h = await harness(t);
  h.pods.set("shop/web-1", pod({ node: "n2" }));
  assert.deepEqual(await h.server.handle(line(ADD)), { ok: false, error: "scheduled to node n2, not to n1" });
  assert.equal(h.server.size, 0);

  h.pods.set("shop/web-1", pod());
  const p = h.server.handle(line(ADD));
  h.server.settle(enforced({ identity: 300, iface: onVeth }));
  assert.deepEqual(await p, { ok: true });
  const del = { op: "del", containerId: "other", namespace: "shop", pod: "web-1" };
  assert.deepEqual(await h.server.handle(line(del)), { ok: true });
  assert.equal(h.server.size, 1, "a DEL of another sandbox leaves the declaration");
  assert.deepEqual(await h.server.handle(line({ ...del, containerId: ADD.containerId })), { ok: true });
  assert.equal(h.server.size, 0);
  assert.equal(h.server.interfaceOf(pod()), undefined);

  assert.deepEqual(await h.server.handle(line({ ...ADD, op: "check" })), {
    ok: false,
    error: "the agent has no declaration of container 0123456789ab",
  });
  const bad = await h.server.handle('{"op":"add"}');
  assert.deepEqual(bad, { ok: false, error: "bad request: containerId: required" });
});

test("a newer sandbox of the pod supersedes the older one's request; a vanished interface is dropped", async (t) => {
  const h = await harness(t);
  h.pods.set("shop/web-1", pod());
  const first = h.server.handle(line(ADD));
  const second = h.server.handle(
    line({ ...ADD, containerId: "fedcba", interface: { name: "veth9", index: 43 } }),
  );
  assert.deepEqual(await first, { ok: false, error: "superseded by container fedcba" });
  const before = Date.now() + 1;
  assert.deepEqual(h.server.dropGone(new Map([["veth9", 43]]), before), []);
  assert.deepEqual(h.server.dropGone(new Map([["veth9", 44]]), before), ["shop/web-1"]);
  assert.deepEqual(await second, { ok: false, error: "interface veth9 #43 disappeared while waiting" });
  assert.equal(h.server.size, 0);
});

test("the socket: one line each way, declarations survive a restart, a stale socket is replaced", async (t) => {
  const h = await harness(t);
  const sock = join(h.dir, "cni.sock");
  // A socket file nobody listens on (an agent killed with -9).
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(sock, r));
  await new Promise<void>((r) => {
    dead.close(() => r());
  });
  h.pods.set("shop/web-1", pod());
  await h.server.start(new Map([["veth1234", 42]]));
  const ask = (req: unknown) =>
    new Promise<string>((resolve, reject) => {
      const c = createConnection(sock);
      let out = "";
      c.setEncoding("utf8");
      c.on("data", (d: string) => {
        out += d;
      });
      c.on("end", () => resolve(out));
      c.on("error", reject);
      c.end(`${line(req)}\n`);
    });
  const answer = ask(ADD);
  while (h.reconciled.length === 0) await new Promise((r) => setTimeout(r, 5));
  h.server.settle(enforced({ identity: 300, iface: onVeth }));
  assert.equal(await answer, '{"ok":true}\n');
  assert.equal(
    await ask({ op: "nope" }),
    '{"ok":false,"error":"bad request: op: must be one of add, del, check, got \\"nope\\""}\n',
  );

  // Another agent on the same socket is refused.
  const rival = await harness(t, h.dir);
  await assert.rejects(rival.server.start(), /another process is listening/);
  await h.server.close();

  // A restarted agent finds the declaration (its interface still there), and forgets it when not.
  assert.ok(declarationsPath(sock).endsWith("cni.endpoints.json"));
  const again = await harness(t, h.dir);
  await again.server.start(new Map([["veth1234", 42]]));
  assert.deepEqual(again.server.interfaceOf(pod()), onVeth);
  await again.server.close();
  const gone = await harness(t, h.dir);
  await gone.server.start(new Map([["veth1234", 99]]));
  assert.equal(gone.server.size, 0);
});
