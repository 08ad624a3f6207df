// Flow events from the ring buffer, decoded. The addon polls on its own thread and delivers batches;
// here they become typed events, pushed to listeners or pulled through an async iterator.
import { EventEmitter } from "node:events";
import { type AuditOutcome, type Direction, ReservedRuleId, type Verdict } from "../policy/mapstate.ts";
import type { BpfAddon, RingBufferHandle } from "./kernel/bpf-addon.ts";
import { flowEvent } from "./codec/codecs.ts";
import { enums } from "./codec/layout.generated.ts";
import { dirOfCode, formatAddressBytes, verdictOfCode } from "./codec/keys.ts";

export interface FlowEvent {
  tsNs: bigint;
  epId: number;
  epIdentity: number;
  peerIdentity: number;
  ruleId: number;
  direction: Direction;
  verdict: Verdict | "none";
  // sl_reason in lower case ("policy", "default", "ct_reply", ...), but "allow-localhost" where the
  // compiler's allow-localhost entry (rule id ReservedRuleId.LOCALHOST) decided rather than a policy.
  reason: string;
  family: 4 | 6;
  protocol: number;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  length: number;
  // Present where the Audit policies would decide otherwise: their verdict and rule (ruleId 0: their
  // default). `verdict` is what was enforced.
  audit?: AuditOutcome;
}

const reasonNames = new Map<number, string>(
  Object.entries(enums.sl_reason).map(([k, v]) => [v, k.replace(/^SL_REASON_/, "").toLowerCase()]),
);

function addr(bytes: Uint8Array, v4: boolean): string {
  return formatAddressBytes(bytes.subarray(0, v4 ? 4 : 16));
}

export function decodeFlowEvent(buf: Uint8Array): FlowEvent {
  if (buf.length < flowEvent.size)
    throw new Error(`sl_flow_event: record of ${buf.length} bytes, expected ${flowEvent.size}`);
  const r = flowEvent.decode(buf);
  const v4 = r.family === enums.sl_family.SL_FAMILY_V4;
  const V = enums.sl_verdict;
  return {
    tsNs: r.ts_ns,
    epId: r.ep_id,
    epIdentity: r.ep_identity,
    peerIdentity: r.peer_identity,
    ruleId: r.rule_id,
    direction: dirOfCode(r.dir),
    verdict: r.verdict === V.SL_VERDICT_ALLOW ? "allow" : r.verdict === V.SL_VERDICT_DENY ? "deny" : "none",
    reason:
      r.reason === enums.sl_reason.SL_REASON_POLICY && r.rule_id === ReservedRuleId.LOCALHOST
        ? "allow-localhost"
        : (reasonNames.get(r.reason) ?? `unknown(${r.reason})`),
    family: v4 ? 4 : 6,
    protocol: r.proto,
    src: addr(r.saddr, v4),
    dst: addr(r.daddr, v4),
    sport: r.sport,
    dport: r.dport,
    length: r.len,
    ...(r.audit_verdict !== V.SL_VERDICT_NONE && {
      audit: { verdict: verdictOfCode(r.audit_verdict), ruleId: r.audit_rule_id },
    }),
  };
}

export interface RecordStreamEvents<T> {
  events: [T[]];
  error: [Error];
}

// A ring buffer consumer: emits "events" with each delivered batch (decoded by `decode`), and iterates
// asynchronously. Records that fail to decode are reported as "error" and skipped, never thrown into
// the addon's callback. Call stop() to end polling (the iterator then finishes). Records are queued for
// the iterator only once it is iterated (a listener-only consumer, the agent's monitor, holds none),
// and only up to maxQueued: the rest are counted in `dropped`.
export class RecordStream<T> extends EventEmitter<RecordStreamEvents<T>> {
  readonly #rb: RingBufferHandle;
  readonly #queue: T[] = [];
  #waiter: (() => void) | undefined;
  #stopped = false;
  #iterated = false;
  readonly #maxQueued: number;
  dropped = 0;

  constructor(
    addon: BpfAddon,
    mapFd: number,
    decode: (b: Buffer) => T,
    options: { pollMs?: number; maxQueued?: number } = {},
  ) {
    super();
    this.#maxQueued = options.maxQueued ?? 65536;
    this.#rb = new addon.RingBuffer(
      mapFd,
      (records) => {
        const out: T[] = [];
        for (const rec of records) {
          try {
            out.push(decode(rec));
          } catch (e) {
            if (this.listenerCount("error") > 0) this.emit("error", e as Error);
          }
        }
        if (out.length === 0) return;
        this.emit("events", out);
        if (!this.#iterated) return;
        for (const ev of out) {
          // Only buffer for the iterator up to a bound: a consumer that does not pull must not grow memory.
          if (this.#queue.length < this.#maxQueued) this.#queue.push(ev);
          else this.dropped++;
        }
        this.#waiter?.();
      },
      { pollMs: options.pollMs },
    );
  }

  // Let the process exit while the stream is open.
  unref(): void {
    this.#rb.unref();
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#rb.stop();
    this.#waiter?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    this.#iterated = true;
    for (;;) {
      while (this.#queue.length > 0) yield this.#queue.shift()!;
      if (this.#stopped) return;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
      });
      this.#waiter = undefined;
    }
  }
}

export function openFlowEvents(
  addon: BpfAddon,
  eventsFd: number,
  options?: { pollMs?: number },
): RecordStream<FlowEvent> {
  return new RecordStream(addon, eventsFd, decodeFlowEvent, options);
}
