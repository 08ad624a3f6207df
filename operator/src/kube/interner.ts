// Shares equal immutable values between cached objects. At issue 14's scale 50,000 pods carry a few
// thousand distinct label sets, a handful of container port lists and a few thousand namespace and
// node names; each JSON-decoded event brings its own copy of every one of them. The cache views
// (cache-view.ts) hand those through an Interner so the cache holds one copy of each. Written by hand:
// no maintained library interns JSON values (V8 internalizes only property names).
// Shared values are frozen, so a reader that would change one fails loudly instead of changing it for
// every pod that shares it. The tables are bounded: at the limit a table starts over, which costs
// sharing (values interned before keep their copies), never correctness.

const DEFAULT_LIMIT = 65_536;

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

export class Interner {
  readonly #strings = new Map<string, string>();
  readonly #values = new Map<string, unknown>();
  readonly #limit: number;

  constructor(limit = DEFAULT_LIMIT) {
    this.#limit = limit;
  }

  /** The one copy of this string. */
  string(s: string): string {
    const held = this.#strings.get(s);
    if (held !== undefined) return held;
    if (this.#strings.size >= this.#limit) this.#strings.clear();
    this.#strings.set(s, s);
    return s;
  }

  /** The one (frozen) copy of a JSON value: equal JSON text, one object. */
  json<T>(value: T): T {
    const key = JSON.stringify(value);
    const held = this.#values.get(key);
    if (held !== undefined) return held as T;
    if (this.#values.size >= this.#limit) this.#values.clear();
    this.#values.set(key, deepFreeze(value));
    return value;
  }

  /** How many values and strings the tables hold (tests). */
  get size(): number {
    return this.#strings.size + this.#values.size;
  }
}
