// The wire protocol between the chained CNI plugin (cni/, `sluice-cni`) and the agent's CNI socket
// (cni-server.ts): one JSON request line, one JSON response line per connection.
//   request  {"op":"add"|"del"|"check","containerId":..,"namespace":..,"pod":..,"podUid":..,
//             "interface":{"name":..,"index":N},"ips":["10.1.0.5/24",...],"timeoutMs":N}
//   response {"ok":true} | {"ok":false,"error":"..."}
// add: the runtime created the pod's interfaces (the plugins before sluice-cni); the answer comes once
// the pod's endpoint is enforced on that interface. del: forget the pod's declaration. check: is the
// endpoint enforced on that interface now? Parsing is pure and every error names the field.
import { isIP } from "node:net";

export type CniOp = "add" | "del" | "check";

export interface CniRequest {
  op: CniOp;
  containerId: string;
  namespace: string;
  pod: string;
  // Absent when the runtime passed no K8S_POD_UID.
  podUid?: string;
  // Required for add and check.
  interface?: { name: string; index: number };
  // The pod's addresses without prefix length, deduplicated (required non-empty for add).
  ips: string[];
  timeoutMs?: number;
}

export type CniResponse = { ok: true } | { ok: false; error: string };

export class CniRequestError extends Error {
  override name = "CniRequestError";
}

export const MAX_REQUEST_BYTES = 64 * 1024;
export const MAX_TIMEOUT_MS = 10 * 60_000;
const OPS: readonly CniOp[] = ["add", "del", "check"];
// Kubernetes names: a namespace is a DNS-1123 label, a pod a DNS-1123 subdomain.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// Linux interface names: 1-15 bytes, no '/', ':' or whitespace.
const IFNAME = /^[^/:\s]{1,15}$/;

function fail(field: string, problem: string, got?: unknown): never {
  const shown = got === undefined ? "" : `, got ${JSON.stringify(got)?.slice(0, 80) ?? String(got)}`;
  throw new CniRequestError(`${field}: ${problem}${shown}`);
}

function str(o: Record<string, unknown>, field: string, required: boolean): string | undefined {
  const v = o[field];
  if (v === undefined || v === null || v === "") {
    if (required) fail(field, "required");
    return undefined;
  }
  if (typeof v !== "string") fail(field, "must be a string", v);
  return v;
}

// "10.1.0.5/24" or "10.1.0.5" → "10.1.0.5" (IPv6 as given, lower case).
export function parseAddress(text: string, field: string): string {
  const slash = text.indexOf("/");
  const ip = slash < 0 ? text : text.slice(0, slash);
  const family = isIP(ip);
  if (family === 0) fail(field, "not an IP address", text);
  if (slash >= 0) {
    const len = text.slice(slash + 1);
    const max = family === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(len) || Number(len) > max) fail(field, `prefix length must be 0-${max}`, text);
  }
  return ip.toLowerCase();
}

export function parseCniRequest(line: string): CniRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (e) {
    throw new CniRequestError(`request: not JSON (${(e as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("request", "must be a JSON object");
  const o = raw as Record<string, unknown>;
  const op = o.op;
  if (typeof op !== "string" || !OPS.includes(op as CniOp))
    fail("op", `must be one of ${OPS.join(", ")}`, op);
  const containerId = str(o, "containerId", true)!;
  const namespace = str(o, "namespace", true)!;
  if (namespace.length > 63 || !DNS_LABEL.test(namespace))
    fail("namespace", "not a Kubernetes namespace name", namespace);
  const pod = str(o, "pod", true)!;
  if (pod.length > 253 || !DNS_SUBDOMAIN.test(pod)) fail("pod", "not a Kubernetes pod name", pod);
  const podUid = str(o, "podUid", false);
  if (podUid !== undefined && podUid.length > 128) fail("podUid", "longer than 128 characters");

  let iface: CniRequest["interface"];
  if (o.interface !== undefined && o.interface !== null) {
    const i = o.interface as Record<string, unknown>;
    if (typeof i !== "object" || Array.isArray(i)) fail("interface", "must be an object", o.interface);
    if (typeof i.name !== "string" || !IFNAME.test(i.name))
      fail(
        "interface.name",
        "must be a Linux interface name (1-15 characters, no '/', ':' or spaces)",
        i.name,
      );
    if (typeof i.index !== "number" || !Number.isInteger(i.index) || i.index <= 0 || i.index > 0x7fffffff)
      fail("interface.index", "must be a positive integer (the interface's ifindex)", i.index);
    iface = { name: i.name, index: i.index };
  } else if (op !== "del") fail("interface", `required for ${op}`);

  let ips: string[] = [];
  if (o.ips !== undefined && o.ips !== null) {
    if (!Array.isArray(o.ips)) fail("ips", "must be an array of addresses", o.ips);
    ips = [
      ...new Set(
        o.ips.map((v, n) => {
          if (typeof v !== "string") fail(`ips[${n}]`, "must be a string", v);
          return parseAddress(v, `ips[${n}]`);
        }),
      ),
    ];
  }
  if (op === "add" && ips.length === 0) fail("ips", "at least one address is required for add");

  let timeoutMs: number | undefined;
  if (o.timeoutMs !== undefined && o.timeoutMs !== null) {
    const t = o.timeoutMs;
    if (typeof t !== "number" || !Number.isInteger(t) || t <= 0 || t > MAX_TIMEOUT_MS)
      fail("timeoutMs", `must be an integer from 1 to ${MAX_TIMEOUT_MS}`, t);
    timeoutMs = t;
  }
  return {
    op: op as CniOp,
    containerId,
    namespace,
    pod,
    ...(podUid !== undefined ? { podUid } : {}),
    ...(iface ? { interface: iface } : {}),
    ips,
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  };
}

export function encodeResponse(r: CniResponse): string {
  return `${JSON.stringify(r)}\n`;
}
