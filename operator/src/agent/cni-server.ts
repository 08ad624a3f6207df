// The agent's side of the chained CNI plugin (cni/, `sluice-cni`; protocol in cni-protocol.ts). The
// container runtime runs the cluster's CNI plugin, then sluice-cni, which sends the pod's host-side
// interface and addresses here and waits: the answer is ok only once the pod's endpoint is compiled
// with its security identity, written to the maps and its program attached on that interface, so
// the runtime starts the containers with enforcement in place. Otherwise, when the request's deadline
// passes, the answer says what is missing and the runtime retries the sandbox (fail closed).
//
// What the agent does with a declaration (the KubeAgent asks for it):
// - podView(): a pod whose status has no addresses yet (kubelet posts them after CNI returns) is read
//   with the declared ones, so it is an endpoint at once and the ipcache maps them to its identity;
// - interfaceOf(): the declared interface wins over the route lookup (which a bridged CNI defeats);
// - settle(): after each reconcile pass, answers the requests whose endpoint is now enforced;
// - dropGone(): a declared interface that disappeared (link check) is forgotten, so the pod's
//   interface is resolved again.
// Declarations are kept in a file next to the socket (on /run: they live as long as the node's pods),
// so a restarted agent keeps enforcing on the interfaces a bridged CNI's routes do not reveal.
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { basename, dirname, extname, join } from "node:path";
import type { Pod } from "../api/k8s.ts";
import { podKey } from "../api/k8s.ts";
import type { Logger } from "../observe/log.ts";
import { ReservedIdentity } from "../policy/mapstate.ts";
import { podIps } from "../policy/universe.ts";
import {
  type CniRequest,
  CniRequestError,
  type CniResponse,
  encodeResponse,
  MAX_REQUEST_BYTES,
  parseCniRequest,
} from "./cni-protocol.ts";
import type { HostInterface } from "./host-interfaces.ts";

export const DEFAULT_CNI_TIMEOUT_MS = 30_000;

export interface CniHooks {
  node: string;
  logger: Logger;
  // The pod as the agent's cache holds it now.
  pod: (namespace: string, name: string) => Pod | undefined;
  // The pod's declaration changed (or a check wants a fresh look): reconcile its endpoint now.
  reconcile: (key: string) => void;
}

// What the last pass enforced for an endpoint: its identity and the interface its program is on.
export interface EndpointStatus {
  identity: number;
  iface?: HostInterface;
  // Why the node cannot enforce it (its endpoint map is full): the request fails at once, and the
  // runtime retries the sandbox later.
  refused?: string;
}

export interface Declaration {
  containerId: string;
  podUid?: string;
  iface: HostInterface;
  ips: string[];
  // When it was declared (ms since the epoch): a link list taken before it cannot judge it.
  at: number;
}

interface Waiter {
  req: CniRequest;
  key: string;
  timer: NodeJS.Timeout;
  // Why it is not answered yet, as of the last pass.
  reason?: string;
  answer: (r: CniResponse) => void;
}

type Verdict = { done: true } | { done: false; reason: string; final?: boolean };

// The declarations file beside the socket: /run/sluice/cni.sock → /run/sluice/cni.endpoints.json.
export function declarationsPath(socketPath: string): string {
  return join(dirname(socketPath), `${basename(socketPath, extname(socketPath))}.endpoints.json`);
}

// A request's log fields: one line per CNI call (a pod sandbox starting or going), never per packet.
function requestFields(req: CniRequest): Record<string, unknown> {
  return {
    op: req.op,
    endpoint: `${req.namespace}/${req.pod}`,
    container: req.containerId.slice(0, 12),
    ...(req.interface ? { iface: req.interface.name, ifindex: req.interface.index } : {}),
    ...(req.ips.length ? { ips: req.ips } : {}),
  };
}

export class CniServer {
  readonly socketPath: string;
  readonly statePath: string;
  readonly #hooks: CniHooks;
  readonly #decls = new Map<string, Declaration>();
  readonly #waiters = new Set<Waiter>();
  #server?: Server;
  #passes = 0;
  #closed = false;

  constructor(socketPath: string, hooks: CniHooks) {
    this.socketPath = socketPath;
    this.statePath = declarationsPath(socketPath);
    this.#hooks = hooks;
  }

  get size(): number {
    return this.#decls.size;
  }

  // Loads the declarations an earlier agent left, keeps those whose interface is still there, and
  // listens. A stale socket file is removed; a live one (another agent) is an error.
  async start(links?: ReadonlyMap<string, number>): Promise<void> {
    this.#load();
    if (links) this.dropGone(links, Date.now());
    mkdirSync(dirname(this.socketPath), { recursive: true });
    if (existsSync(this.socketPath)) {
      if (!lstatSync(this.socketPath).isSocket())
        throw new Error(`--cni-socket ${this.socketPath}: exists and is not a socket`);
      if (await answers(this.socketPath))
        throw new Error(`--cni-socket ${this.socketPath}: another process is listening on it`);
      rmSync(this.socketPath, { force: true });
    }
    // Half-open: a client may end its side after the request and still read the answer.
    const server = createServer({ allowHalfOpen: true }, (sock) => this.#onConnection(sock));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.socketPath, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (e) => this.#hooks.logger.error({ err: e }, "cni socket failed"));
    chmodSync(this.socketPath, 0o600);
    this.#server = server;
  }

  // Answers what waits, stops listening and removes the socket (declarations stay for the next agent).
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of [...this.#waiters]) this.#finish(w, { ok: false, error: "the agent is shutting down" });
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(this.socketPath, { force: true });
  }

  // A pod as the compiler should read it: with the declared addresses while its status has none.
  podView(pod: Pod): Pod {
    if (this.#decls.size === 0 || podIps(pod).length > 0) return pod;
    const d = this.#matching(pod);
    if (!d) return pod;
    return { ...pod, status: { ...pod.status, podIP: d.ips[0], podIPs: d.ips.map((ip) => ({ ip })) } };
  }

  // The declared host-side interface of a pod (undefined: resolve it by route).
  interfaceOf(pod: Pod): HostInterface | undefined {
    return this.#decls.size === 0 ? undefined : this.#matching(pod)?.iface;
  }

  #matching(pod: Pod): Declaration | undefined {
    const d = this.#decls.get(podKey(pod));
    if (!d || (d.podUid && pod.metadata.uid && pod.metadata.uid !== d.podUid)) return undefined;
    return d;
  }

  // After a reconcile pass: answers the requests whose endpoint it enforced.
  settle(status: (key: string) => EndpointStatus | undefined): void {
    this.#passes++;
    for (const w of [...this.#waiters]) {
      const v = this.#evaluate(w, status);
      if (v.done) this.#finish(w, { ok: true });
      else if (v.final) this.#finish(w, { ok: false, error: v.reason });
      else w.reason = v.reason;
    }
  }

  // Forgets declarations whose interface is no longer there under its name and index (links: name →
  // ifindex, listed at listedAt). Returns their keys.
  dropGone(links: ReadonlyMap<string, number>, listedAt: number): string[] {
    const gone: string[] = [];
    for (const [key, d] of this.#decls) {
      if (d.at >= listedAt || links.get(d.iface.ifname) === d.iface.ifindex) continue;
      this.#decls.delete(key);
      gone.push(key);
      for (const w of this.#waitersOf(key))
        this.#finish(w, {
          ok: false,
          error: `interface ${d.iface.ifname} #${d.iface.ifindex} disappeared while waiting`,
        });
    }
    if (gone.length > 0) {
      this.#hooks.logger.info({ endpoints: gone }, "cni: interfaces gone, declarations dropped");
      this.#trySave();
    }
    return gone;
  }

  // One request, as the socket delivers it (tests call it directly).
  async handle(line: string): Promise<CniResponse> {
    const t0 = performance.now();
    let req: CniRequest;
    try {
      req = parseCniRequest(line);
    } catch (e) {
      const error = e instanceof CniRequestError ? `bad request: ${e.message}` : String(e);
      this.#hooks.logger.warn({ error }, "cni: bad request");
      return { ok: false, error };
    }
    const r = await this.#handle(req);
    const fields = { ...requestFields(req), duration_ms: Math.round((performance.now() - t0) * 100) / 100 };
    if (r.ok) this.#hooks.logger.info(fields, `cni ${req.op}: ok`);
    else this.#hooks.logger.warn({ ...fields, error: r.error }, `cni ${req.op}: refused`);
    return r;
  }

  #handle(req: CniRequest): Promise<CniResponse> | CniResponse {
    if (this.#closed) return { ok: false, error: "the agent is shutting down" };
    const key = `${req.namespace}/${req.pod}`;
    if (req.op === "del") {
      const d = this.#decls.get(key);
      if (d && d.containerId === req.containerId) {
        this.#decls.delete(key);
        this.#trySave();
        for (const w of this.#waitersOf(key))
          if (w.req.containerId === req.containerId)
            this.#finish(w, { ok: false, error: "the sandbox was deleted (CNI DEL) while waiting" });
        this.#hooks.reconcile(key);
      }
      return { ok: true };
    }
    const iface = { ifname: req.interface!.name, ifindex: req.interface!.index };
    if (req.op === "check") {
      const d = this.#decls.get(key);
      if (!d || d.containerId !== req.containerId)
        return {
          ok: false,
          error: `the agent has no declaration of container ${req.containerId.slice(0, 12)}`,
        };
      if (d.iface.ifindex !== iface.ifindex || d.iface.ifname !== iface.ifname)
        return {
          ok: false,
          error: `declared on ${d.iface.ifname} #${d.iface.ifindex}, not on this interface`,
        };
    } else {
      // A pod known to be another node's is refused at once; anything else may still change.
      const pod = this.#hooks.pod(req.namespace, req.pod);
      const wrong = pod && this.#wrongPod(pod, req);
      if (wrong) return { ok: false, error: wrong };
      const d: Declaration = { containerId: req.containerId, iface, ips: req.ips, at: Date.now() };
      if (req.podUid) d.podUid = req.podUid;
      const before = this.#decls.get(key);
      this.#decls.set(key, d);
      try {
        this.#save();
      } catch (e) {
        if (before) this.#decls.set(key, before);
        else this.#decls.delete(key);
        return {
          ok: false,
          error: `cannot record the declaration in ${this.statePath}: ${(e as Error).message}`,
        };
      }
      // A newer sandbox of the pod replaces what an older one's request waited for.
      for (const w of this.#waitersOf(key))
        if (w.req.containerId !== req.containerId)
          this.#finish(w, { ok: false, error: `superseded by container ${req.containerId.slice(0, 12)}` });
    }
    return new Promise<CniResponse>((resolve) => {
      const timeoutMs = req.timeoutMs ?? DEFAULT_CNI_TIMEOUT_MS;
      const w: Waiter = {
        req,
        key,
        answer: resolve,
        timer: setTimeout(
          () => this.#finish(w, { ok: false, error: this.#timedOut(w, timeoutMs) }),
          timeoutMs,
        ),
      };
      this.#waiters.add(w);
      this.#hooks.reconcile(key);
    });
  }

  // Final problems: the pod (as the cache holds it, with the request's UID) is not this node's.
  #wrongPod(pod: Pod, req: CniRequest): string | undefined {
    if (req.podUid && pod.metadata.uid && pod.metadata.uid !== req.podUid) return undefined;
    const node = pod.spec?.nodeName;
    if (node && node !== this.#hooks.node) return `scheduled to node ${node}, not to ${this.#hooks.node}`;
    if (pod.spec?.hostNetwork) return "uses the host's network: there is no endpoint to enforce";
    return undefined;
  }

  #evaluate(w: Waiter, status: (key: string) => EndpointStatus | undefined): Verdict {
    const podReason = this.#podReason(w);
    if (podReason) return podReason;
    const s = status(w.key);
    if (!s) return { done: false, reason: "not an endpoint of this node yet" };
    if (s.refused) return { done: false, final: true, reason: s.refused };
    if (s.identity === ReservedIdentity.INIT)
      return {
        done: false,
        reason: "no security identity yet (the operator has not allocated one for the pod's labels)",
      };
    const want = w.req.interface!;
    if (!s.iface || s.iface.ifindex !== want.index || s.iface.ifname !== want.name)
      return {
        done: false,
        reason: `not enforced on ${want.name} #${want.index} yet${s.iface ? ` (enforced on ${s.iface.ifname} #${s.iface.ifindex})` : ""}`,
      };
    return { done: true };
  }

  // What about the pod itself keeps the request waiting (or fails it).
  #podReason(w: Waiter): { done: false; reason: string; final?: boolean } | undefined {
    const d = this.#decls.get(w.key);
    if (!d || d.containerId !== w.req.containerId)
      return { done: false, final: true, reason: "the declaration was replaced or deleted" };
    const pod = this.#hooks.pod(w.req.namespace, w.req.pod);
    if (!pod) return { done: false, reason: "the pod is not in the agent's cache yet" };
    const wrong = this.#wrongPod(pod, w.req);
    if (wrong) return { done: false, final: true, reason: wrong };
    if (w.req.podUid && pod.metadata.uid && pod.metadata.uid !== w.req.podUid)
      return {
        done: false,
        reason: `the agent's cache holds the pod with UID ${pod.metadata.uid}, not ${w.req.podUid} (an older pod of that name)`,
      };
    return undefined;
  }

  #timedOut(w: Waiter, timeoutMs: number): string {
    const reason =
      this.#passes === 0
        ? "the agent has not synced its caches with the API server yet"
        : (this.#podReason(w)?.reason ?? w.reason ?? "not enforced yet");
    return `${reason} (waited ${timeoutMs} ms)`;
  }

  #waitersOf(key: string): Waiter[] {
    return [...this.#waiters].filter((w) => w.key === key);
  }

  #finish(w: Waiter, r: CniResponse): void {
    if (!this.#waiters.delete(w)) return;
    clearTimeout(w.timer);
    w.answer(r);
  }

  #onConnection(sock: Socket): void {
    let buf = "";
    let taken = false;
    const take = (line: string) => {
      taken = true;
      void this.handle(line).then((r) => {
        if (!sock.destroyed && sock.writable) sock.end(encodeResponse(r));
      });
    };
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => {
      if (taken) return;
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl >= 0) take(buf.slice(0, nl));
      else if (buf.length > MAX_REQUEST_BYTES) {
        taken = true;
        sock.end(encodeResponse({ ok: false, error: `request: longer than ${MAX_REQUEST_BYTES} bytes` }));
      }
    });
    // A request without its newline is still one request.
    sock.on("end", () => {
      if (!taken && buf.trim() !== "") take(buf);
      else if (!taken) sock.end();
    });
    // A plugin that gave up closed its end; its request still ends at its own deadline (which is
    // shorter than the plugin's).
    sock.on("error", () => {});
  }

  #load(): void {
    let text: string;
    try {
      text = readFileSync(this.statePath, "utf8");
    } catch {
      return; // none yet
    }
    try {
      const saved = JSON.parse(text) as { declarations?: Record<string, Declaration> };
      for (const [key, d] of Object.entries(saved.declarations ?? {})) {
        if (
          typeof d?.containerId === "string" &&
          typeof d.iface?.ifname === "string" &&
          Number.isInteger(d.iface?.ifindex) &&
          Array.isArray(d.ips)
        )
          this.#decls.set(key, d);
      }
      if (this.#decls.size > 0)
        this.#hooks.logger.info(
          { declarations: this.#decls.size, path: this.statePath },
          "cni: declarations restored",
        );
    } catch (e) {
      this.#hooks.logger.warn({ err: e, path: this.statePath }, "cni: ignoring unreadable declarations");
    }
  }

  #save(): void {
    mkdirSync(dirname(this.statePath), { recursive: true });
    const tmp = `${this.statePath}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ declarations: Object.fromEntries(this.#decls) }), { mode: 0o600 });
    renameSync(tmp, this.statePath);
  }

  #trySave(): void {
    try {
      this.#save();
    } catch (e) {
      this.#hooks.logger.error({ err: e, path: this.statePath }, "cni: cannot save declarations");
    }
  }
}

// Whether something accepts connections on a unix socket path.
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}
