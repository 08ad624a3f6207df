// The policy implementation delay: from the moment the agent's watch delivers a generation of a
// policy (or its deletion) to the moment a pass writes that generation, or a newer one, to the maps.
// A generation overtaken by a newer one before any pass wrote it is implemented when the newer one
// is: its delay is how long the change it made waited. Only changes count: the objects of the first
// list (a starting agent) and updates that leave the generation alone (status writes) are not
// policy changes. Pure: the caller supplies the clock and what the compiler holds.

export interface PolicyRef {
  kind: string;
  namespace?: string;
  name: string;
}

interface Delivery {
  ref: PolicyRef;
  // undefined: deleted.
  generation: number | undefined;
  at: number;
}

export class PolicyDelayTracker {
  // The oldest unwritten delivery of each policy (by kind/ns/name) and the generations after it.
  readonly #pending = new Map<string, Delivery[]>();

  get size(): number {
    return this.#pending.size;
  }

  // A generation (undefined: the deletion) arrived on the watch at `at` (ms).
  delivered(id: string, ref: PolicyRef, generation: number | undefined, at: number): void {
    const list = this.#pending.get(id) ?? [];
    list.push({ ref, generation, at });
    this.#pending.set(id, list);
  }

  // A pass wrote the maps at `at` (ms): `written` says which generation of a policy they now hold
  // (undefined: none, the policy is gone). Returns the delays (seconds) of the deliveries implemented.
  written(written: (ref: PolicyRef) => number | undefined, at: number): number[] {
    const out: number[] = [];
    for (const [id, list] of this.#pending) {
      const held = written(list[0]!.ref);
      // The newest delivery the maps hold implements every one before it.
      let last = -1;
      for (let i = 0; i < list.length; i++) if (implemented(list[i]!.generation, held)) last = i;
      if (last < 0) continue;
      for (const d of list.slice(0, last + 1)) out.push(Math.max(0, at - d.at) / 1000);
      if (last === list.length - 1) this.#pending.delete(id);
      else this.#pending.set(id, list.slice(last + 1));
    }
    return out;
  }

  clear(): void {
    this.#pending.clear();
  }
}

function implemented(delivered: number | undefined, held: number | undefined): boolean {
  if (delivered === undefined) return held === undefined;
  return held !== undefined && held >= delivered;
}
