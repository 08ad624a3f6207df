// A keep-alive HTTPS client for the scale rig: tens of thousands of small requests to the test API
// server through a bounded pool of connections (one TLS handshake per socket, not per request), with
// the kubeconfig's credentials (client certificate or bearer token). Populating and churn go through
// it; Sluice's own components use their normal clients.
import { Agent, request } from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";

export interface ApiResponse<T> {
  status: number;
  body: T;
}

export class ApiHttp {
  readonly server: URL;
  private readonly agent: Agent;
  private readonly base: { ca?: Buffer | string; cert?: Buffer | string; key?: Buffer | string };
  private readonly headers: Record<string, string>;

  private constructor(server: URL, agent: Agent, base: ApiHttp["base"], headers: Record<string, string>) {
    this.server = server;
    this.agent = agent;
    this.base = base;
    this.headers = headers;
  }

  static async fromKubeConfig(kc: KubeConfig, maxSockets = 32): Promise<ApiHttp> {
    const server = kc.getCurrentCluster()?.server;
    if (!server) throw new Error("kubeconfig names no cluster server");
    const opts: { ca?: Buffer; cert?: Buffer; key?: Buffer; headers?: Record<string, string> } = {};
    await kc.applyToHTTPSOptions(opts);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k] = String(v);
    const agent = new Agent({ keepAlive: true, maxSockets, ca: opts.ca, cert: opts.cert, key: opts.key });
    return new ApiHttp(new URL(server), agent, { ca: opts.ca, cert: opts.cert, key: opts.key }, headers);
  }

  /** One request; resolves with any status (callers decide what a 409 or 404 means). */
  send<T = unknown>(method: string, path: string, body?: unknown, contentType = "application/json") {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<ApiResponse<T>>((resolve, reject) => {
      const req = request(
        new URL(path, this.server),
        {
          method,
          agent: this.agent,
          ...this.base,
          headers: {
            ...this.headers,
            Accept: "application/json",
            ...(payload === undefined
              ? {}
              : { "Content-Type": contentType, "Content-Length": Buffer.byteLength(payload) }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: unknown = text;
            try {
              parsed = text ? JSON.parse(text) : {};
            } catch {
              // Not JSON (/metrics): the text itself.
            }
            resolve({ status: res.statusCode ?? 0, body: parsed as T });
          });
        },
      );
      req.on("error", reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /** A request that must succeed (2xx, or one of `ok`); throws naming method, path and the reason. */
  async must<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    contentType?: string,
    ok: readonly number[] = [],
  ): Promise<ApiResponse<T>> {
    for (let attempt = 0; ; attempt++) {
      let r: ApiResponse<T>;
      try {
        r = await this.send<T>(method, path, body, contentType);
      } catch (err) {
        // A kept-alive connection the API server closed under load ("socket hang up"): again, on a
        // new one (a create that did land answers 409 the second time, which callers accept).
        if (attempt >= 8) throw err;
        await new Promise((res) => setTimeout(res, 100 * 2 ** attempt));
        continue;
      }
      if ((r.status >= 200 && r.status < 300) || ok.includes(r.status)) return r;
      // 429/5xx under load: the API server asks to come back; anything else is the rig's bug.
      if ((r.status === 429 || r.status >= 500) && attempt < 8) {
        await new Promise((res) => setTimeout(res, 100 * 2 ** attempt));
        continue;
      }
      const msg = (r.body as { message?: string })?.message ?? JSON.stringify(r.body).slice(0, 300);
      throw new Error(`${method} ${path}: HTTP ${r.status}: ${msg}`);
    }
  }

  close(): void {
    this.agent.destroy();
  }
}
