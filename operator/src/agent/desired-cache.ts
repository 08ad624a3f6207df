// MapSync plans from a DesiredState. Building one from a MapState (desiredState) canonicalizes every
// entry of every endpoint on every pass: 45 ms at 10k policies × 100 endpoints, where the keyed
// compile of one policy edit takes ~5 ms. The incremental compiler hands back the same EndpointState
// object for every endpoint it did not recompile, so the desired form of those is kept and only new or
// changed endpoints (and the ipcache when it changed) go through desiredState again. The checks that
// span endpoints (one endpoint per interface, one per id) are made here on every pass.
import {
  closedEntries,
  type DesiredEndpoint,
  type DesiredState,
  desiredState,
} from "../datapath/writer/sync-plan.ts";
import type { EndpointState, IpcacheEntry, MapState } from "../policy/mapstate.ts";

interface Cached {
  source: EndpointState;
  ifindex: number;
  desired: DesiredEndpoint;
}

export class DesiredStateCache {
  #ipcacheSource?: readonly IpcacheEntry[];
  #ipcache: DesiredState["ipcache"] = new Map();
  #closedSource?: MapState["failClosed"];
  #closed: DesiredState["failClosed"];
  readonly #endpoints = new Map<string, Cached>();
  // Endpoints rebuilt by the last build() (observability, tests).
  rebuilt = 0;

  // The same result as desiredState(state, ifindexOf), reusing what did not change.
  build(
    state: MapState,
    ifindexOf: (ep: EndpointState) => number | undefined,
  ): { desired: DesiredState; pending: string[] } {
    if (state.ipcache !== this.#ipcacheSource) {
      this.#ipcache = desiredState(
        { ipcache: state.ipcache, endpoints: [] },
        () => undefined,
      ).desired.ipcache;
      this.#ipcacheSource = state.ipcache;
    }
    if (state.failClosed !== this.#closedSource) {
      this.#closed = state.failClosed && closedEntries(state.failClosed.entries);
      this.#closedSource = state.failClosed;
    }
    const endpoints = new Map<number, DesiredEndpoint>();
    const ids = new Map<number, string>();
    const pending: string[] = [];
    const live = new Set<string>();
    this.rebuilt = 0;
    for (const ep of state.endpoints) {
      live.add(ep.key);
      const ifindex = ifindexOf(ep);
      if (ifindex === undefined) {
        pending.push(ep.key);
        continue;
      }
      let c = this.#endpoints.get(ep.key);
      if (!c || c.source !== ep || c.ifindex !== ifindex) {
        const one = desiredState({ ipcache: [], endpoints: [ep] }, () => ifindex).desired.endpoints.get(
          ifindex,
        );
        if (!one) throw new Error(`endpoint ${ep.key}: no desired state for ifindex ${ifindex}`);
        c = { source: ep, ifindex, desired: one };
        this.#endpoints.set(ep.key, c);
        this.rebuilt++;
      }
      const other = endpoints.get(ifindex);
      if (other) throw new Error(`endpoint ${ep.key}: ifindex ${ifindex} already used by ${other.key}`);
      const dupId = ids.get(ep.id);
      if (dupId) throw new Error(`endpoint ${ep.key}: id ${ep.id} already used by ${dupId}`);
      ids.set(ep.id, ep.key);
      endpoints.set(ifindex, c.desired);
    }
    for (const k of this.#endpoints.keys()) if (!live.has(k)) this.#endpoints.delete(k);
    const closed = this.#closed;
    return { desired: { ipcache: this.#ipcache, endpoints, ...(closed && { failClosed: closed }) }, pending };
  }
}
