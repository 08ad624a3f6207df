// One connection pool per process for @kubernetes/client-node's generated clients and watches.
// client-node 2.0.1 builds a new undici Agent for every request (KubeConfig.createDispatcher is not
// cached, unlike its https agents), so every call opened a fresh TLS connection and left the old one
// idle: the scale rig (test/scale) measured identity creates at ~70/s through the generated client
// and ~290/s over kept-alive connections on the same API server. shareDispatcher makes every request
// of a KubeConfig reuse one Agent per set of TLS credentials (CA, client certificate and key, as the
// kubeconfig gives them at that request, so a rotated certificate gets a new pool).
import type { KubeConfig } from "@kubernetes/client-node";
import { credentialsKey } from "./tls-credentials.ts";

type Dispatcher = NonNullable<
  ReturnType<Parameters<KubeConfig["applySecurityAuthentication"]>[0]["getDispatcher"]>
>;

const patched = new WeakSet<KubeConfig>();

export function shareDispatcher(kc: KubeConfig): KubeConfig {
  if (patched.has(kc)) return kc;
  patched.add(kc);
  const original = kc.applySecurityAuthentication.bind(kc);
  const pools = new Map<string, Dispatcher>();
  kc.applySecurityAuthentication = async (context) => {
    await original(context);
    const fresh = context.getDispatcher();
    if (!fresh) return;
    const tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
    await kc.applyToHTTPSOptions(tls);
    const key = credentialsKey(kc.getCurrentCluster()?.server ?? "", tls);
    const shared = pools.get(key);
    if (!shared) {
      // Credentials changed (or the first request): a new pool; the previous ones drain and close.
      for (const old of pools.values()) void old.close().catch(() => {});
      pools.clear();
      pools.set(key, fresh);
      return;
    }
    context.setDispatcher(shared);
    // The Agent made for this request has no connection yet: closing it costs nothing.
    void fresh.close().catch(() => {});
  };
  return kc;
}
