// Raw JSON requests for what the generated clients do awkwardly: lists of any resource as the
// wire JSON (the typed clients turn core objects into model classes with Date fields, while watch
// events stay plain JSON; an informer's cache must hold one shape).
import { Agent, request } from "node:https";
import type { RequestOptions } from "node:https";
import type { KubeConfig, KubernetesListObject, KubernetesObject } from "@kubernetes/client-node";
import { KubeApiError, statusFromBody } from "./errors.ts";
import { credentialsKey } from "./tls-credentials.ts";

// client-node's applyToHTTPSOptions gives every request of a kubeconfig one cached https.Agent, made
// without keepAlive, so each request opened and closed its own TLS connection: in the operator's CPU
// profile while it allocated identities, 16 % of its time went to connecting and 10 % to building a
// TLS context per request, and the API server paid a handshake per create (the scale rig measured
// allocation at 0.40× of the API server's own create rate). Instead one kept-alive Agent per server
// and TLS credentials, as the kubeconfig gives them at each request (a rotated certificate gets a new
// pool). A process with several identities (tests run the operator and agents in one) keeps a few; the
// oldest beyond that is closed after the longest a request may take.
const pools = new Map<string, Agent>();
const MAX_POOLS = 8;
const RETIRE_AFTER_MS = 120_000;

function keptAlive(server: string, o: RequestOptions): Agent {
  const key = credentialsKey(server, o);
  let agent = pools.get(key);
  if (!agent) {
    agent = new Agent({
      keepAlive: true,
      ca: o.ca,
      cert: o.cert,
      key: o.key,
      pfx: o.pfx,
      passphrase: o.passphrase,
      servername: o.servername,
      ...(o.rejectUnauthorized !== undefined && { rejectUnauthorized: o.rejectUnauthorized }),
    });
    pools.set(key, agent);
    if (pools.size > MAX_POOLS) {
      const [oldest, old] = pools.entries().next().value as [string, Agent];
      pools.delete(oldest);
      setTimeout(() => old.destroy(), RETIRE_AFTER_MS).unref();
    }
  }
  return agent;
}

export async function rawRequest<T>(
  kc: KubeConfig,
  method: string,
  path: string,
  body?: unknown,
  opts: { contentType?: string; timeoutMs?: number } = {},
): Promise<T> {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error("kubeconfig: the current context names no cluster");
  const url = new URL(server + path);
  const req0: RequestOptions = { method, headers: { Accept: "application/json" } };
  await kc.applyToHTTPSOptions(req0);
  // A proxy's agent (the cluster's proxy-url) stays client-node's.
  if (!kc.getCurrentCluster()?.proxyUrl) req0.agent = keptAlive(server, req0);
  const contentType = opts.contentType ?? "application/json";
  const timeoutMs = opts.timeoutMs ?? 60_000;
  // AbortSignal.timeout throws a RangeError on a fractional delay (timeouts are often computed).
  req0.signal = AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)));
  const payload = body === undefined ? undefined : JSON.stringify(body);
  if (payload !== undefined) {
    req0.headers = {
      ...req0.headers,
      "Content-Type": contentType,
      "Content-Length": Buffer.byteLength(payload),
    };
  }
  return new Promise<T>((resolve, reject) => {
    const req = request(url, req0, (res) => {
      // Decoded as it arrives into a V8 string: a list page of tens of megabytes never becomes one
      // native Buffer (Buffer.concat), whose freed space glibc kept as resident heap (test/scale
      // measured 290 MB of it in an operator that had listed 50,000 pods and 1,000 node reports).
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        text += c;
      });
      res.on("error", reject);
      res.on("end", () => {
        const code = res.statusCode ?? 0;
        if (code < 200 || code >= 300) {
          reject(new KubeApiError(statusFromBody(code, text)));
          return;
        }
        try {
          resolve((text ? JSON.parse(text) : {}) as T);
        } catch {
          reject(new KubeApiError({ code, reason: "", message: `${method} ${path}: response is not JSON` }));
        }
      });
    });
    req.on("error", reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/**
 * Lists a collection (all pages) as wire JSON; the list's resourceVersion is the first page's.
 * `view` maps each item as its page arrives (an informer's cache view), so the whole list is never
 * held as the server sent it.
 */
export async function rawList<T extends KubernetesObject>(
  kc: KubeConfig,
  path: string,
  query: Record<string, string | undefined> = {},
  view: (item: T) => T = (item) => item,
): Promise<KubernetesListObject<T>> {
  const items: T[] = [];
  let resourceVersion = "";
  let cont: string | undefined;
  do {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, v);
    params.set("limit", "500");
    if (cont) params.set("continue", cont);
    const page = await rawRequest<KubernetesListObject<T>>(kc, "GET", `${path}?${params}`);
    if (!resourceVersion) resourceVersion = page.metadata?.resourceVersion ?? "";
    for (const item of page.items ?? []) items.push(view(item));
    cont = (page.metadata as { continue?: string } | undefined)?.continue || undefined;
  } while (cont);
  return { apiVersion: "v1", kind: "List", metadata: { resourceVersion }, items };
}
