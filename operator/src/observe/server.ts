// The daemons' HTTP server (agent :9962, operator :9963): /metrics in the Prometheus text format
// (prom-client), /healthz (liveness) and /readyz (readiness). Like kube-apiserver's, the probes
// answer "ok" or, with status 503, one "[-]<check> failed: <reason>" line per failing check;
// ?verbose lists every check. Plain node:http: three read-only routes need no framework.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";
import { UsageError } from "../cli/usage.ts";
import { failures, type HealthCheck } from "./health.ts";

export interface ListenAddress {
  host: string;
  port: number;
}

// "host:port", "[::1]:port": how the daemons log and record an address they listen on.
export function formatListenAddress(a: ListenAddress): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

// Listens on a TCP address (port 0: a free one) or a unix socket path; resolves with the TCP address
// bound, or undefined for a path. A bind error (port taken) rejects.
export async function listenOn(
  server: Server,
  at: ListenAddress | { path: string },
): Promise<ListenAddress | undefined> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    const done = () => {
      server.off("error", reject);
      resolve();
    };
    if ("path" in at) server.listen(at.path, done);
    else server.listen(at.port, at.host, done);
  });
  if ("path" in at) return undefined;
  const a = server.address() as AddressInfo;
  return { host: a.address, port: a.port };
}

// Ends open connections (a /metrics scrape, a monitor stream) and waits for the server to close.
export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/**
 * `--metrics-addr`: ":9962" (all addresses), "127.0.0.1:9962", "[::1]:9962"; "0" disables the server
 * (undefined). Port 0 (":0") picks a free port, reported by ObserveServer.address.
 */
export function parseListenAddress(text: string, flag = "--metrics-addr"): ListenAddress | undefined {
  if (text === "0" || text === "") return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535)
    throw new UsageError(
      `${flag}: ${JSON.stringify(text)} is not [host]:port (e.g. :9962, 127.0.0.1:9962) or 0`,
    );
  const host = m[1] ?? (m[2] || "::");
  return { host, port };
}

/** A registry with the process and Node.js runtime metrics (resident memory, heap, event-loop lag, GC). */
export function newRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

export interface ObserveServerOptions {
  listen: ListenAddress;
  registry: Registry;
  live: readonly HealthCheck[];
  ready: readonly HealthCheck[];
}

export class ObserveServer {
  readonly #server: Server;
  readonly address: ListenAddress;

  private constructor(server: Server, address: ListenAddress) {
    this.#server = server;
    this.address = address;
  }

  static async start(o: ObserveServerOptions): Promise<ObserveServer> {
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      if (url.pathname === "/metrics") {
        o.registry.metrics().then(
          (text) => res.writeHead(200, { "content-type": o.registry.contentType }).end(text),
          (e: unknown) =>
            res
              .writeHead(500, { "content-type": "text/plain" })
              .end(`metrics: ${e instanceof Error ? e.message : e}\n`),
        );
        return;
      }
      const checks =
        url.pathname === "/healthz" || url.pathname === "/livez"
          ? o.live
          : url.pathname === "/readyz"
            ? o.ready
            : undefined;
      if (!checks) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found: /metrics, /healthz, /readyz\n");
        return;
      }
      const failed = failures(checks);
      const verbose = url.searchParams.has("verbose");
      const lines = checks
        .map((c) => {
          const f = failed.find((x) => x.name === c.name);
          return f ? `[-]${c.name} failed: ${f.reason}` : verbose ? `[+]${c.name} ok` : undefined;
        })
        .filter((l): l is string => l !== undefined);
      const body = failed.length
        ? `${lines.join("\n")}\n${url.pathname.slice(1)} check failed\n`
        : verbose
          ? `${lines.join("\n")}\nok\n`
          : "ok\n";
      res.writeHead(failed.length ? 503 : 200, { "content-type": "text/plain; charset=utf-8" }).end(body);
    });
    server.keepAliveTimeout = 5000;
    return new ObserveServer(server, (await listenOn(server, o.listen))!);
  }

  close(): Promise<void> {
    return closeServer(this.#server);
  }
}
