// The agent's recent flows: a fixed-size ring (the oldest overwritten first, and counted), and the
// streams following it. Memory stays bounded whatever the event rate and however many readers.
import type { FlowRecord } from "./flow-record.ts";

export class FlowBuffer {
  readonly capacity: number;
  readonly #ring: FlowRecord[] = [];
  #pushed = 0;
  readonly #followers = new Set<(r: FlowRecord) => void>();

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`flow buffer capacity ${capacity}`);
    this.capacity = capacity;
  }

  push(r: FlowRecord): void {
    this.#ring[this.#pushed % this.capacity] = r;
    this.#pushed++;
    for (const f of this.#followers) f(r);
  }

  get size(): number {
    return Math.min(this.#pushed, this.capacity);
  }

  // Flows that fell out of the ring.
  get overwritten(): number {
    return Math.max(0, this.#pushed - this.capacity);
  }

  // What the ring holds, oldest first.
  recent(): FlowRecord[] {
    if (this.#pushed <= this.capacity) return this.#ring.slice(0, this.#pushed);
    const at = this.#pushed % this.capacity;
    return [...this.#ring.slice(at), ...this.#ring.slice(0, at)];
  }

  // Calls `f` with every flow pushed from now on, until the returned function is called.
  follow(f: (r: FlowRecord) => void): () => void {
    this.#followers.add(f);
    return () => this.#followers.delete(f);
  }

  get followers(): number {
    return this.#followers.size;
  }
}
