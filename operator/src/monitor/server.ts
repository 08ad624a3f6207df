// The agent's monitor endpoint: GET /v1/flows streams named flows as NDJSON (flow-record.ts), the
// buffered ones first, then (follow=true) new ones as they come, with a stats record first, every few
// seconds while following, and last. GET /v1/rules answers the node's per-rule counters, named
// (stats/rule-stats.ts), one JSON object. Filters are the CLI's flags as query parameters (filter.ts).
// A reader slower than the events never slows the agent: a few records wait for it, the rest are
// dropped and counted in its stats. It listens on loopback only (or a unix socket, the lab's): flows
// name pods and addresses, and `sluice monitor` reaches it through the API server's pods/portforward,
// so who may read them is decided by Kubernetes RBAC. Plain node:http, like observe/server.ts.
import { existsSync, lstatSync, unlinkSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { UsageError } from "../cli/usage.ts";
import {
  closeServer,
  formatListenAddress,
  type ListenAddress,
  listenOn,
  parseListenAddress,
} from "../observe/server.ts";
import type { FlowBuffer } from "./buffer.ts";
import { FilterError, type FlowFilter, matchesFlow, parseFlowFilter } from "./filter.ts";
import type { RulesRecord } from "../stats/rule-stats.ts";
import type { FlowPeer, FlowRecord, StatsRecord } from "./flow-record.ts";

export const DEFAULT_MONITOR_PORT = 9964;
export const MONITOR_ADDR = `127.0.0.1:${DEFAULT_MONITOR_PORT}`;
// The agent's event sampling while it serves the monitor (its flags override it): every denied packet
// and 1 of 100 allowed ones, within the per-CPU rate limit.
export const MONITOR_SAMPLING = { allow: 100, deny: 1 } as const;
// Flows the agent keeps (about 600 bytes each: a few MiB).
export const DEFAULT_MONITOR_BUFFER = 4096;
// Records that wait for a slow reader before the next ones are dropped.
const READER_BACKLOG = 1024;
const STATS_INTERVAL_MS = 5000;

export type MonitorListen = ListenAddress | { path: string };

// `--monitor-addr`: 127.0.0.1:9964, [::1]:9964, unix:<path>; 0 turns it off (undefined). Loopback only.
export function parseMonitorAddress(text: string): MonitorListen | undefined {
  if (text.startsWith("unix:")) {
    const path = text.slice("unix:".length);
    if (!path.startsWith("/"))
      throw new UsageError(`--monitor-addr: ${JSON.stringify(text)}: unix:<absolute path>`);
    return { path };
  }
  const a = parseListenAddress(text, "--monitor-addr");
  if (a && !/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(a.host))
    throw new UsageError(
      `--monitor-addr: ${JSON.stringify(text)}: loopback only (127.0.0.1:port, [::1]:port or unix:<path>); flows name pods and addresses, readers come through pods/portforward`,
    );
  return a;
}

export function formatMonitorAddress(a: MonitorListen): string {
  return "path" in a ? `unix:${a.path}` : formatListenAddress(a);
}

export interface MonitorServerOptions {
  listen: MonitorListen;
  buffer: FlowBuffer;
  // The agent's counts (without this stream's readerDropped).
  stats: () => Omit<StatsRecord, "type" | "time" | "readerDropped">;
  // An identity's labels, for ?labels=true (the agent's current view).
  labels: (identity: number) => Record<string, string> | undefined;
  // The node's per-rule counters; absent: GET /v1/rules answers 404.
  rules?: () => RulesRecord;
  statsIntervalMs?: number;
}

export class MonitorServer {
  readonly #server: Server;
  readonly address: MonitorListen;

  private constructor(server: Server, address: MonitorListen) {
    this.#server = server;
    this.address = address;
  }

  static async start(o: MonitorServerOptions): Promise<MonitorServer> {
    const server = createServer((req, res) => handle(o, req, res));
    const listen = o.listen;
    // A socket file left by an agent that was killed: nothing listens on it any more.
    if ("path" in listen && existsSync(listen.path) && lstatSync(listen.path).isSocket())
      unlinkSync(listen.path);
    return new MonitorServer(server, (await listenOn(server, listen)) ?? listen);
  }

  close(): Promise<void> {
    return closeServer(this.#server);
  }
}

function handle(o: MonitorServerOptions, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://localhost");
  if (req.method !== "GET") {
    res.writeHead(405, { allow: "GET" }).end();
    return;
  }
  if (url.pathname === "/v1/rules" && o.rules) {
    res
      .writeHead(200, { "content-type": "application/json", "cache-control": "no-store" })
      .end(`${JSON.stringify(o.rules())}\n`);
    return;
  }
  if (url.pathname !== "/v1/flows") {
    const paths = o.rules ? "GET /v1/flows, GET /v1/rules" : "GET /v1/flows";
    res.writeHead(404, { "content-type": "text/plain" }).end(`not found: ${paths}\n`);
    return;
  }
  let filter: FlowFilter;
  try {
    filter = parseFlowFilter((p) => url.searchParams.get(p) ?? undefined);
  } catch (e) {
    if (!(e instanceof FilterError)) throw e;
    res.writeHead(400, { "content-type": "text/plain" }).end(`${e.message}\n`);
    return;
  }
  new FlowStream(o, res, filter, url.searchParams.get("labels") === "true").run(
    url.searchParams.get("follow") === "true",
  );
}

// One reader's stream.
class FlowStream {
  readonly #o: MonitorServerOptions;
  readonly #res: ServerResponse;
  readonly #filter: FlowFilter;
  readonly #labels: boolean;
  readonly #backlog: FlowRecord[] = [];
  #dropped = 0;
  #corked = false;
  #following = false;

  constructor(o: MonitorServerOptions, res: ServerResponse, filter: FlowFilter, labels: boolean) {
    this.#o = o;
    this.#res = res;
    this.#filter = filter;
    this.#labels = labels;
  }

  run(follow: boolean): void {
    const res = this.#res;
    res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
    this.#stats();
    for (const r of this.#o.buffer.recent()) this.#offer(r);
    if (!follow) {
      this.#stats();
      res.end();
      return;
    }
    this.#following = true;
    const unfollow = this.#o.buffer.follow((r) => this.#offer(r));
    const timer = setInterval(() => this.#stats(), this.#o.statsIntervalMs ?? STATS_INTERVAL_MS);
    res.on("drain", () => this.#flush());
    res.on("close", () => {
      unfollow();
      clearInterval(timer);
    });
  }

  #offer(r: FlowRecord): void {
    if (!matchesFlow(r, this.#filter)) return;
    if (this.#backlog.length > 0 || this.#res.writableNeedDrain) {
      if (this.#backlog.length < READER_BACKLOG) this.#backlog.push(r);
      else this.#dropped++;
      return;
    }
    this.#write(r);
  }

  #flush(): void {
    while (this.#backlog.length > 0 && !this.#res.writableNeedDrain) this.#write(this.#backlog.shift()!);
  }

  #write(r: FlowRecord): void {
    const out = this.#labels
      ? { ...r, source: this.#labelled(r.source), destination: this.#labelled(r.destination) }
      : r;
    // Following, the flows of one ring-buffer batch go out in one write: corked until it is through.
    if (this.#following && !this.#corked) {
      this.#corked = true;
      this.#res.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#res.uncork();
      });
    }
    this.#res.write(`${JSON.stringify(out)}\n`);
  }

  #labelled(p: FlowPeer): FlowPeer {
    const labels = this.#o.labels(p.identity);
    return labels ? { ...p, labels } : p;
  }

  #stats(): void {
    if (this.#res.writableEnded) return;
    const s: StatsRecord = {
      type: "stats",
      time: new Date().toISOString(),
      ...this.#o.stats(),
      readerDropped: this.#dropped,
    };
    this.#res.write(`${JSON.stringify(s)}\n`);
  }
}
