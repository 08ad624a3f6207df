// Which connection pool a request belongs to: a digest of the server and the TLS options a kubeconfig
// gives the request (kc.applyToHTTPSOptions), equal for equal credentials and new when a certificate
// is rotated. One definition for both pools: the generated clients' (shared-dispatcher.ts) and the raw
// requests' (raw.ts).
import { createHash } from "node:crypto";

export interface TlsCredentials {
  ca?: unknown;
  cert?: unknown;
  key?: unknown;
  pfx?: unknown;
  passphrase?: unknown;
  servername?: unknown;
  rejectUnauthorized?: unknown;
}

const bytes = (v: unknown): string | Uint8Array =>
  typeof v === "string" || v instanceof Uint8Array ? v : v === undefined ? "" : JSON.stringify(v);

export function credentialsKey(server: string, o: TlsCredentials): string {
  const h = createHash("sha256").update(server);
  for (const part of [o.ca, o.cert, o.key, o.pfx, o.passphrase, o.servername, o.rejectUnauthorized])
    for (const v of Array.isArray(part) ? part : [part]) h.update("\0").update(bytes(v));
  return h.digest("hex");
}
