// The native addon against real maps and programs (test object bpf/testdata/addon_test.bpf.c).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import {
  type BpfError,
  isBpfError,
  type LoadedObject,
  UpdateFlags,
} from "../../operator/src/datapath/kernel/bpf-addon.ts";
import { RecordStream } from "../../operator/src/datapath/flow-events.ts";
import {
  attachedProgramId,
  attachOrReplace,
  detach,
  replaceProgram,
} from "../../operator/src/datapath/kernel/links.ts";
import { DatapathPins } from "../../operator/src/datapath/kernel/pins.ts";
import { PerCpuMap } from "../../operator/src/datapath/kernel/typed-map.ts";
import { privilegeProblem, requirePrivileged } from "../support/privileged.ts";
import { addon, badObject, testInterface, pinRoot, testObject } from "./addon-rig.ts";

const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u64 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
const u32codec = {
  name: "u32",
  size: 4,
  encode: (v: number, buf: Uint8Array = new Uint8Array(4), off = 0) => {
    Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).writeUInt32LE(v, off);
    return buf;
  },
  decode: (buf: Uint8Array, off = 0) =>
    Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readUInt32LE(off),
};
const u64codec = {
  name: "u64",
  size: 8,
  encode: (v: bigint, buf: Uint8Array = new Uint8Array(8), off = 0) => {
    Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).writeBigUInt64LE(v, off);
    return buf;
  },
  decode: (buf: Uint8Array, off = 0) =>
    Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readBigUInt64LE(off),
};

function thrown(fn: () => unknown): BpfError {
  try {
    fn();
  } catch (e) {
    if (isBpfError(e)) return e;
    throw e;
  }
  assert.fail("expected a BPF error");
}

const skip = privilegeProblem() !== undefined && process.env.CI !== "true";

describe("addon", { skip: skip ? privilegeProblem() : false }, () => {
  let obj: LoadedObject;
  let root: ReturnType<typeof pinRoot>;
  const a = skip ? undefined! : addon();
  const mapFd = (name: string) => obj.maps.find((m) => m.name === name)!.fd;
  const progFd = (name: string) => obj.programs.find((p) => p.name === name)!.fd;

  before(() => {
    root = pinRoot();
    obj = a.loadObject(testObject, { pinRoot: root.path });
  });
  after(() => {
    obj?.close();
    root?.remove();
  });

  test("describes programs and maps, pins LIBBPF_PIN_BY_NAME maps", (t) => {
    if (!requirePrivileged(t)) return;
    assert.deepEqual(obj.programs.map((p) => p.name).sort(), ["t_prog", "t_prog2"]);
    const hash = obj.maps.find((m) => m.name === "t_hash")!;
    assert.deepEqual([hash.keySize, hash.valueSize, hash.maxEntries, hash.pinned], [4, 8, 1024, true]);
    assert.ok(existsSync(`${root.path}/t_hash`));
    assert.equal(a.mapInfo(hash.fd).maxEntries, 1024);
  });

  test("single ops and errno codes", (t) => {
    if (!requirePrivileged(t)) return;
    const fd = mapFd("t_hash");
    const out = Buffer.alloc(8);
    assert.equal(a.mapLookup(fd, u32(5000), out), false);
    a.mapUpdate(fd, u32(5000), u64(42));
    assert.equal(a.mapLookup(fd, u32(5000), out), true);
    assert.equal(out.readBigUInt64LE(), 42n);
    const e = thrown(() => a.mapUpdate(fd, u32(5000), u64(1), UpdateFlags.NOEXIST));
    assert.deepEqual([e.op, e.code, e.errno], ["bpf_map_update_elem", "EEXIST", 17]);
    const e2 = thrown(() => a.mapUpdate(fd, u32(5001), u64(1), UpdateFlags.EXIST));
    assert.equal(e2.code, "ENOENT");
    assert.equal(a.mapLookupAndDelete(fd, u32(5000), out), true);
    assert.equal(a.mapDelete(fd, u32(5000)), false);
    const e3 = thrown(() => a.mapInfo(987654));
    assert.equal(e3.code, "EBADFD"); // what the kernel returns for a bad fd in BPF_OBJ_GET_INFO_BY_FD
    assert.throws(
      () => a.mapLookup(fd, u32(1), Buffer.alloc(4)),
      TypeError,
      "a short value buffer must be refused",
    );
  });

  test("batch update / dump / delete with partial failure counts", (t) => {
    if (!requirePrivileged(t)) return;
    const fd = mapFd("t_hash");
    const n = 300;
    const keys = Buffer.alloc(4 * n);
    const vals = Buffer.alloc(8 * n);
    for (let i = 0; i < n; i++) {
      keys.writeUInt32LE(10000 + i, 4 * i);
      vals.writeBigUInt64LE(BigInt(i * 7), 8 * i);
    }
    assert.equal(a.mapUpdateBatch(fd, keys, vals, n), n);
    const d = a.mapDump(fd);
    const seen = new Map<number, bigint>();
    for (let i = 0; i < d.count; i++) seen.set(d.keys.readUInt32LE(4 * i), d.values.readBigUInt64LE(8 * i));
    for (let i = 0; i < n; i++) assert.equal(seen.get(10000 + i), BigInt(i * 7));
    assert.equal(a.mapKeys(fd).count, d.count);

    // A batch that overflows max_entries (1024) stops when the map is full and says how far it got.
    const over = 1100;
    const k2 = Buffer.alloc(4 * over);
    for (let i = 0; i < over; i++) k2.writeUInt32LE(40000 + i, 4 * i);
    const e = thrown(() => a.mapUpdateBatch(fd, k2, Buffer.alloc(8 * over), over));
    assert.deepEqual([e.op, e.code, e.done], ["bpf_map_update_batch", "E2BIG", 1024 - n]);
    assert.equal(a.mapDeleteBatch(fd, k2, 1024 - n), 1024 - n);
    assert.throws(() => a.mapUpdateBatch(fd, k2, Buffer.alloc(8 * over), 1, UpdateFlags.NOEXIST), TypeError);

    assert.equal(a.mapDeleteBatch(fd, keys, n), n);
    // Batch delete stops at the first missing key.
    const k3 = Buffer.alloc(8);
    a.mapUpdate(fd, u32(20000), u64(1));
    k3.writeUInt32LE(20000, 0);
    k3.writeUInt32LE(424242, 4);
    const e2 = thrown(() => a.mapDeleteBatch(fd, k3, 2));
    assert.deepEqual([e2.code, e2.done], ["ENOENT", 1]);
    assert.equal(a.mapKeys(fd).count, 0);
  });

  test("raw batch lookup pages through the map", (t) => {
    if (!requirePrivileged(t)) return;
    const fd = mapFd("t_hash");
    const n = 50;
    const keys = Buffer.alloc(4 * n);
    for (let i = 0; i < n; i++) keys.writeUInt32LE(30000 + i, 4 * i);
    a.mapUpdateBatch(fd, keys, Buffer.alloc(8 * n), n);
    let inTok: Buffer | null = null;
    let total = 0;
    for (;;) {
      const outTok = Buffer.alloc(8);
      const r = a.mapLookupBatch(fd, inTok, outTok, Buffer.alloc(4 * 16), Buffer.alloc(8 * 16), 16);
      total += r.count;
      if (!r.more) break;
      inTok = outTok;
    }
    assert.equal(total, n);
    a.mapDeleteBatch(fd, keys, n);
  });

  test("LPM trie: longest match, iteration fallback for dumps", (t) => {
    if (!requirePrivileged(t)) return;
    const fd = mapFd("t_lpm");
    const key = (bits: number, ip: number[]) => Buffer.from([bits, 0, 0, 0, ...ip]);
    a.mapUpdateBatch(
      fd,
      Buffer.concat([key(8, [10, 0, 0, 0]), key(24, [10, 1, 2, 0])]),
      Buffer.concat([u32(8), u32(24)]),
      2,
    );
    const out = Buffer.alloc(4);
    assert.ok(a.mapLookup(fd, key(32, [10, 1, 2, 3]), out));
    assert.equal(out.readUInt32LE(), 24);
    assert.ok(a.mapLookup(fd, key(32, [10, 9, 9, 9]), out));
    assert.equal(out.readUInt32LE(), 8);
    assert.equal(a.mapLookup(fd, key(32, [11, 0, 0, 1]), out), false);
    const d = a.mapDump(fd);
    assert.equal(d.count, 2);
    assert.equal(d.batched, false);
  });

  test("prog test run: retval, and per-CPU values summed over CPUs", (t) => {
    if (!requirePrivileged(t)) return;
    const counters = new PerCpuMap(a, mapFd("t_percpu"), "t_percpu", u32codec, u64codec);
    const sum = (slot: number) => (counters.get(slot) ?? []).reduce((x, y) => x + y, 0n);
    assert.equal(counters.cpus, a.numPossibleCpus());
    const before0 = sum(0);
    const pkt = Buffer.alloc(77);
    const r = a.progTestRun(progFd("t_prog"), { data: pkt, repeat: 10 });
    assert.equal(r.retval, 0);
    assert.equal(r.dataOut.length, 77);
    a.mapUpdate(mapFd("t_hash"), u32(77), u64(2));
    assert.equal(a.progTestRun(progFd("t_prog"), { data: pkt }).retval, 2);
    a.mapDelete(mapFd("t_hash"), u32(77));
    assert.equal(sum(0) - before0, 11n);
    assert.equal(counters.entries().length, 4);
  });

  test("ring buffer records reach JS in batches off the event loop", async (t) => {
    if (!requirePrivileged(t)) return;
    const stream = new RecordStream(
      a,
      mapFd("t_events"),
      (b) => ({ len: b.readUInt32LE(0), mark: b.readUInt32LE(4) }),
      {
        pollMs: 20,
      },
    );
    const got: { len: number; mark: number }[] = [];
    const done = new Promise<void>((resolve) => {
      stream.on("events", (evs) => {
        got.push(...evs);
        if (got.filter((e) => e.mark >= 1000).length >= 5) resolve();
      });
    });
    // __sk_buff: len @0, pkt_type @4, mark @8; the ctx must be the full struct size (192 on 6.x).
    for (let i = 0; i < 5; i++) {
      const ctx = Buffer.alloc(192);
      ctx.writeUInt32LE(1000 + i, 8);
      a.progTestRun(progFd("t_prog"), { data: Buffer.alloc(60), ctx });
    }
    const timeout = setTimeout(() => assert.fail("events did not arrive"), 5000);
    await done;
    clearTimeout(timeout);
    stream.stop();
    assert.deepEqual(
      got.filter((e) => e.mark >= 1000).map((e) => [e.len, e.mark]),
      [0, 1, 2, 3, 4].map((i) => [60, 1000 + i]),
    );
  });

  test("verifier log on a rejected program", (t) => {
    if (!requirePrivileged(t)) return;
    const e = thrown(() => a.loadObject(badObject, {}));
    assert.equal(e.op, "bpf_object__load");
    assert.equal(e.code, "EACCES");
    assert.match(e.verifierLog ?? "", /invalid mem access/);
    assert.match(e.libbpfLog ?? "", /bad_prog/);
  });

  test("pinned maps are reused by a second load with the same pin root", (t) => {
    if (!requirePrivileged(t)) return;
    a.mapUpdate(mapFd("t_hash"), u32(4242), u64(99));
    const second = a.loadObject(testObject, { pinRoot: root.path });
    try {
      const fd2 = second.maps.find((m) => m.name === "t_hash")!.fd;
      assert.equal(a.mapInfo(fd2).id, a.mapInfo(mapFd("t_hash")).id);
      const out = Buffer.alloc(8);
      assert.ok(a.mapLookup(fd2, u32(4242), out));
      assert.equal(out.readBigUInt64LE(), 99n);
      // Unpinned maps are per load.
      const pc2 = second.maps.find((m) => m.name === "t_percpu")!.fd;
      assert.notEqual(a.mapInfo(pc2).id, a.mapInfo(mapFd("t_percpu")).id);
      const pinnedFd = a.objGet(`${root.path}/t_hash`);
      assert.equal(a.mapInfo(pinnedFd).id, a.mapInfo(fd2).id);
      a.closeFd(pinnedFd);
    } finally {
      second.close();
      a.mapDelete(mapFd("t_hash"), u32(4242));
    }
  });

  test("tcx: attach, pin, atomic update, adopt the pin, detach; tc fallback path", (t) => {
    if (!requirePrivileged(t)) return;
    const dev = testInterface();
    try {
      execFileSync("ip", ["link", "set", dev.name, "up"]);
      const p1 = progFd("t_prog");
      const p2 = progFd("t_prog2");
      const id1 = a.progInfo(p1).id;
      const id2 = a.progInfo(p2).id;
      const att = attachOrReplace(a, {
        pins: new DatapathPins(root.path),
        ifname: dev.name,
        hook: "egress",
        progFd: p1,
      });
      assert.equal(att.mode, "tcx");
      assert.equal(att.adopted, false);
      assert.ok(existsSync(`${root.path}/links/${dev.name}-egress`));
      const linkFd = a.objGet(att.pinPath!);
      const info = a.linkInfo(linkFd);
      assert.deepEqual([info.progId, info.ifindex, info.attachType], [id1, a.ifNameToIndex(dev.name), 47]);
      // With an expected old program that is not the attached one, the kernel refuses.
      assert.equal(thrown(() => a.linkUpdate(linkFd, p2, p2)).code, "EPERM");
      a.closeFd(linkFd);

      replaceProgram(a, att, p2, p1);
      assert.equal(attachedProgramId(a, att), id2);
      // A restarted agent: attaching again finds the pin and swaps the program in, never re-attaching.
      const again = attachOrReplace(a, {
        pins: new DatapathPins(root.path),
        ifname: dev.name,
        hook: "egress",
        progFd: p1,
      });
      assert.equal(again.adopted, true);
      assert.equal(attachedProgramId(a, again), id1);

      const tc = attachOrReplace(a, {
        pins: new DatapathPins(root.path),
        ifname: dev.name,
        hook: "ingress",
        progFd: p1,
        mode: "tc",
      });
      assert.equal(tc.mode, "tc");
      assert.equal(attachedProgramId(a, tc), id1);
      const tc2 = attachOrReplace(a, {
        pins: new DatapathPins(root.path),
        ifname: dev.name,
        hook: "ingress",
        progFd: p2,
        mode: "tc",
      });
      assert.equal(tc2.adopted, true);
      assert.equal(attachedProgramId(a, tc2), id2);
      detach(a, tc2);
      assert.equal(attachedProgramId(a, tc2), undefined);

      detach(a, again);
      assert.equal(existsSync(again.pinPath!), false);
      a.tcHookDestroy(a.ifNameToIndex(dev.name));
    } finally {
      dev.remove();
    }
  });

  test("a stale link pin (device gone) is replaced by a new link", (t) => {
    if (!requirePrivileged(t)) return;
    const dev = testInterface();
    try {
      const att = attachOrReplace(a, {
        pins: new DatapathPins(root.path),
        ifname: dev.name,
        hook: "ingress",
        progFd: progFd("t_prog"),
      });
      dev.remove();
      execFileSync("ip", ["link", "add", dev.name, "type", "veth", "peer", "name", `${dev.name}p`]);
      const next = attachOrReplace(a, {
        pins: new DatapathPins(root.path),
        ifname: dev.name,
        hook: "ingress",
        progFd: progFd("t_prog"),
      });
      assert.equal(next.adopted, false);
      assert.notEqual(next.ifindex, att.ifindex);
      detach(a, next);
    } finally {
      dev.remove();
    }
  });

  test("ifNameToIndex", (t) => {
    if (!requirePrivileged(t)) return;
    assert.equal(a.ifNameToIndex("lo"), 1);
    assert.equal(thrown(() => a.ifNameToIndex("no-such-if0")).code, "ENODEV");
  });
});
