// `sluice monitor`'s filters and the agent's monitor server, without a kernel: the filter parser (the
// CLI's flags and the server's query parameters are one parser) and matcher, the bounded buffer, and
// GET /v1/flows on a loopback port: buffered flows with a stats header and trailer, following, a bad
// filter answered 400, and a reader too slow for the events skipping flows and being told how many.
import assert from "node:assert/strict";
import { request } from "node:http";
import { connect } from "node:net";
import { describe, test } from "node:test";
import { FlowBuffer } from "../../operator/src/monitor/buffer.ts";
import { readFlows } from "../../operator/src/monitor/client.ts";
import { FilterError, filterQuery, matchesFlow, parseFlowFilter } from "../../operator/src/monitor/filter.ts";
import type { FlowRecord, MonitorRecord, StatsRecord } from "../../operator/src/monitor/flow-record.ts";
import { formatFlow, formatLoss } from "../../operator/src/monitor/format.ts";
import { MonitorServer, parseMonitorAddress } from "../../operator/src/monitor/server.ts";

function flow(over: Partial<FlowRecord> = {}): FlowRecord {
  return {
    type: "flow",
    time: "2026-12-03T19:20:17.123Z",
    node: "n1",
    direction: "ingress",
    verdict: "denied",
    reason: "default",
    endpoint: "shop/db",
    source: { address: "10.0.1.1", port: 40000, identity: 300, entity: "pod", pod: "shop/frontend" },
    destination: { address: "10.0.1.2", port: 5432, identity: 301, entity: "pod", pod: "shop/db" },
    protocol: "TCP",
    port: 5432,
    length: 60,
    decidedBy: "default deny (isolated by NetworkPolicy/shop/db-ingress)",
    isolatedBy: ["NetworkPolicy/shop/db-ingress"],
    ...over,
  };
}

const filterOf = (params: Record<string, string>) => parseFlowFilter((p) => params[p]);

describe("filters", () => {
  test("each filter given must match", () => {
    const f = flow();
    assert.ok(matchesFlow(f, filterOf({})));
    assert.ok(matchesFlow(f, filterOf({ verdict: "denied", namespace: "shop", port: "5432/tcp" })));
    assert.ok(!matchesFlow(f, filterOf({ verdict: "allowed" })));
    assert.ok(matchesFlow(f, filterOf({ from: "shop/frontend", to: "shop/db" })));
    assert.ok(!matchesFlow(f, filterOf({ from: "shop/db" })));
    assert.ok(matchesFlow(f, filterOf({ pod: "db", namespace: "shop" })));
    assert.ok(!matchesFlow(f, filterOf({ pod: "db", namespace: "other" })));
    assert.ok(!matchesFlow(f, filterOf({ port: "5432/UDP" })));
    // The policy: by key, namespace/name or name, the deciding rule's or an isolating one.
    for (const policy of ["NetworkPolicy/shop/db-ingress", "shop/db-ingress", "db-ingress"])
      assert.ok(matchesFlow(f, filterOf({ policy })), policy);
    assert.ok(!matchesFlow(f, filterOf({ policy: "ingress" })));
    const ruled = flow({
      verdict: "allowed",
      isolatedBy: undefined,
      rule: {
        policy: "AdminNetworkPolicy/guard",
        kind: "AdminNetworkPolicy",
        name: "guard",
        direction: "ingress",
        index: 1,
        action: "allow",
        ruleId: 7,
      },
    });
    assert.ok(matchesFlow(ruled, filterOf({ policy: "guard" })));
    assert.ok(!matchesFlow(ruled, filterOf({ policy: "db-ingress" })));
    // Peers that are no pod: entity, CIDR, address.
    const world = flow({
      source: { address: "8.8.8.8", port: 53, identity: 2, entity: "world", cidr: "8.8.0.0/16" },
    });
    for (const from of ["world", "8.8.0.0/16", "8.8.8.8"])
      assert.ok(matchesFlow(world, filterOf({ from })), from);
    // Since: flows at or after.
    assert.ok(matchesFlow(f, filterOf({ since: String(Date.parse(f.time)) })));
    assert.ok(!matchesFlow(f, filterOf({ since: "2026-12-03T19:20:18Z" })));
  });

  test("bad values name the flag", () => {
    for (const [p, v] of [
      ["verdict", "dropped"],
      ["port", "99999"],
      ["port", "80/ICMP"],
      ["namespace", "a/b"],
      ["since", "yesterday"],
      ["policy", ""],
    ] as const)
      assert.throws(
        () => filterOf({ [p]: v }),
        (e: unknown) => e instanceof FilterError && e.message.startsWith(`--${p}: `),
        `${p}=${v}`,
      );
  });

  test("the CLI's filter survives the trip as query parameters", () => {
    const f = filterOf({
      verdict: "allowed,denied",
      pod: "db",
      namespace: "shop",
      port: "80,53/UDP",
      since: "1000",
    });
    const back = parseFlowFilter((p) => filterQuery(f).get(p) ?? undefined);
    assert.deepEqual(back, f);
  });

  test("the monitor listens on loopback or a unix socket only", () => {
    assert.deepEqual(parseMonitorAddress("127.0.0.1:9964"), { host: "127.0.0.1", port: 9964 });
    assert.deepEqual(parseMonitorAddress("[::1]:0"), { host: "::1", port: 0 });
    assert.deepEqual(parseMonitorAddress("unix:/run/x.sock"), { path: "/run/x.sock" });
    assert.equal(parseMonitorAddress("0"), undefined);
    for (const bad of [":9964", "0.0.0.0:9964", "10.0.0.1:9964", "unix:rel.sock"])
      assert.throws(() => parseMonitorAddress(bad), /--monitor-addr/, bad);
  });

  test("table lines and loss", () => {
    const line = formatFlow(flow());
    assert.match(
      line,
      /n1 +ingress +denied +shop\/frontend +-> shop\/db +5432\/TCP +default deny \(isolated by NetworkPolicy\/shop\/db-ingress\)$/,
    );
    const stats: StatsRecord = {
      type: "stats",
      time: "",
      node: "n1",
      sampling: { allow: 100, deny: 1, perSecond: 1000 },
      received: { allowed: 3, denied: 10 },
      judged: { allowed: 500, denied: 25 },
      undecodable: 0,
      buffered: 13,
      capacity: 4096,
      overwritten: 0,
      readerDropped: 2,
    };
    assert.equal(
      formatLoss(stats),
      "n1: 2 flows skipped (this reader was too slow); 15 denied packets not reported (rate limit 1000/s per CPU, or the ring buffer was full)",
    );
    assert.equal(formatLoss({ ...stats, readerDropped: 0, judged: { allowed: 0, denied: 10 } }), undefined);
  });
});

describe("the buffer and the server", () => {
  test("the buffer keeps the newest, counts what it overwrote", () => {
    const b = new FlowBuffer(3);
    for (let i = 0; i < 5; i++) b.push(flow({ port: i }));
    assert.deepEqual(
      b.recent().map((r) => r.port),
      [2, 3, 4],
    );
    assert.equal(b.overwritten, 2);
    assert.equal(b.size, 3);
  });

  async function serve(buffer: FlowBuffer, statsIntervalMs = 5000) {
    const server = await MonitorServer.start({
      listen: { host: "127.0.0.1", port: 0 },
      buffer,
      statsIntervalMs,
      labels: (id) => ({ id: String(id) }),
      stats: () => ({
        node: "n1",
        sampling: { allow: 1, deny: 1, perSecond: 0 },
        received: { allowed: 0, denied: buffer.size },
        undecodable: 0,
        buffered: buffer.size,
        capacity: buffer.capacity,
        overwritten: buffer.overwritten,
      }),
    });
    const a = server.address as { host: string; port: number };
    const target = { node: "n1", via: "test", connection: { connect: () => netConnect(a.port) } };
    return { server, target, port: a.port };
  }

  test("GET /v1/flows: stats, the buffered flows that match, stats; follow streams new ones", async (t) => {
    const buffer = new FlowBuffer(10);
    buffer.push(flow());
    buffer.push(flow({ verdict: "allowed", port: 80 }));
    const { server, target } = await serve(buffer);
    t.after(() => server.close());
    const got: MonitorRecord[] = [];
    for await (const r of readFlows(target, new URLSearchParams({ verdict: "denied", labels: "true" })))
      got.push(r);
    assert.deepEqual(
      got.map((r) => r.type),
      ["stats", "flow", "stats"],
    );
    const f = got[1] as FlowRecord;
    assert.equal(f.port, 5432);
    assert.deepEqual(f.source.labels, { id: "300" });

    const abort = new AbortController();
    const followed: FlowRecord[] = [];
    const reading = (async () => {
      try {
        for await (const r of readFlows(
          target,
          new URLSearchParams({ follow: "true", port: "9" }),
          abort.signal,
        )) {
          if (r.type !== "flow") continue;
          followed.push(r);
          if (followed.length === 2) abort.abort();
        }
      } catch (e) {
        if (!abort.signal.aborted) throw e;
      }
    })();
    await new Promise((r) => setTimeout(r, 50));
    buffer.push(flow({ port: 9 }));
    buffer.push(flow({ port: 10 }));
    buffer.push(flow({ port: 9, verdict: "allowed" }));
    await reading;
    assert.deepEqual(
      followed.map((r) => [r.port, r.verdict]),
      [
        [9, "denied"],
        [9, "allowed"],
      ],
    );
    // The server sees the reader's connection close a moment later.
    for (let i = 0; i < 100 && buffer.followers > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(buffer.followers, 0, "the stream's follower is gone with its reader");
  });

  test("a bad filter is a 400 naming the parameter", async (t) => {
    const { server, target } = await serve(new FlowBuffer(1));
    t.after(() => server.close());
    await assert.rejects(async () => {
      for await (const _ of readFlows(target, new URLSearchParams({ verdict: "maybe" }))) {
      }
    }, /400 --verdict: "maybe" is not one of allowed, denied/);
  });

  test("a reader slower than the events: flows skipped and counted, the agent never waits", async (t) => {
    const buffer = new FlowBuffer(16);
    const { server, port } = await serve(buffer, 20);
    t.after(() => server.close());
    // A raw request whose response is not read until every flow was pushed.
    const res = await new Promise<import("node:http").IncomingMessage>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, path: "/v1/flows?follow=true" }, resolve);
      req.on("error", reject);
      req.end();
    });
    res.pause();
    const pushed = 20_000;
    for (let i = 0; i < pushed; i++) buffer.push(flow({ port: i % 60000, decidedBy: "x".repeat(200) }));
    let text = "";
    let lastStats: StatsRecord | undefined;
    let flows = 0;
    res.setEncoding("utf8");
    await new Promise<void>((resolve) => {
      res.on("data", (d: string) => {
        text += d;
        let nl = text.indexOf("\n");
        while (nl >= 0) {
          const r = JSON.parse(text.slice(0, nl)) as MonitorRecord;
          text = text.slice(nl + 1);
          if (r.type === "flow") flows++;
          else lastStats = r;
          nl = text.indexOf("\n");
        }
        if (lastStats && lastStats.readerDropped > 0 && flows + lastStats.readerDropped === pushed) {
          res.destroy();
          resolve();
        }
      });
      res.resume();
    });
    assert.ok(lastStats!.readerDropped > 0, "some flows were skipped");
    assert.equal(flows + lastStats!.readerDropped, pushed, "every flow was delivered or counted");
  });
});

// A plain TCP connection, the byte stream a port-forward gives.
function netConnect(port: number) {
  return connect(port, "127.0.0.1");
}
