// The policy sets the operator has seen, so a node's compact report (SecurityNodeStatus
// policySetHash: one hash over every uid=generation it enforces, kube/node-status.ts) tells which
// generation of each policy the node enforces. Every change of a policy's generation (or a policy
// added or gone) is a new state with a sequence number; the hash of a state is computed when a
// report may need it (states passed through within one burst are not hashed) and remembered. A
// state's generation of a policy is the policy's current one unless the policy changed after it,
// in which case it is what that later change replaced. The last maxChanges changes are kept (a
// node still at an older state than those reads as unknown: not enforcing). One per status
// controller; what the agent compiles is what is counted (kube-agent.ts enforcementSummary).
import { policySetHash } from "../kube/node-status.ts";

interface Change {
  seq: number;
  uid: string;
  /** The generation before this change (undefined: the policy did not exist). */
  before: number | undefined;
}

export class PolicySetLog {
  private readonly generations = new Map<string, number>();
  private readonly byUid = new Map<string, Change[]>();
  private readonly changes: Change[] = [];
  private readonly hashes = new Map<string, number>();
  private readonly maxChanges: number;
  private hashedSeq = -1;
  private hash = "";
  // States at or after floor can be reconstructed from the changes kept.
  private floor = 0;
  seq = 0;

  constructor(maxChanges = 4096) {
    this.maxChanges = maxChanges;
  }

  /** Records a policy's generation (undefined: deleted). True when it is a new state. */
  set(uid: string, generation: number | undefined): boolean {
    const before = this.generations.get(uid);
    if (before === generation) return false;
    if (generation === undefined) this.generations.delete(uid);
    else this.generations.set(uid, generation);
    const change = { seq: ++this.seq, uid, before };
    this.changes.push(change);
    const list = this.byUid.get(uid);
    if (list) list.push(change);
    else this.byUid.set(uid, [change]);
    if (this.changes.length > this.maxChanges) this.prune();
    return true;
  }

  private prune(): void {
    const drop = this.changes.splice(0, this.changes.length - this.maxChanges);
    this.floor = drop[drop.length - 1].seq;
    for (const c of drop) {
      const list = this.byUid.get(c.uid) ?? [];
      list.shift();
      if (list.length === 0) this.byUid.delete(c.uid);
    }
    for (const [h, seq] of this.hashes) if (seq < this.floor) this.hashes.delete(h);
  }

  /** The current state's hash (remembered, so a report of it later is still recognized). */
  currentHash(): string {
    if (this.hashedSeq !== this.seq) {
      this.hash = policySetHash([...this.generations].map(([uid, generation]) => ({ uid, generation })));
      this.hashedSeq = this.seq;
      this.hashes.set(this.hash, this.seq);
    }
    return this.hash;
  }

  /** The state a reported hash stands for, when it is one the operator has seen and still knows. */
  stateOf(hash: string): number | undefined {
    this.currentHash();
    const seq = this.hashes.get(hash);
    return seq !== undefined && seq >= this.floor ? seq : undefined;
  }

  /** A policy's generation in a state (undefined: absent then, or the state is too old). */
  generationAt(seq: number, uid: string): number | undefined {
    if (seq < this.floor) return undefined;
    for (const c of this.byUid.get(uid) ?? []) if (c.seq > seq) return c.before;
    return this.generations.get(uid);
  }

  /** The policies whose generation differs between two states (undefined: not known any more). */
  changedBetween(a: number, b: number): Set<string> | undefined {
    const [lo, hi] = a < b ? [a, b] : [b, a];
    if (lo < this.floor) return undefined;
    const out = new Set<string>();
    for (let i = this.changes.length - 1; i >= 0 && this.changes[i].seq > lo; i--)
      if (this.changes[i].seq <= hi) out.add(this.changes[i].uid);
    return out;
  }
}
