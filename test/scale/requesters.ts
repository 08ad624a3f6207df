// Who asks the API server what, counted by the API server itself: Sluice's components get their own
// users (static bearer tokens, --token-auth-file, in system:masters like the admin), and an audit
// policy logs one Metadata-level event per request of those users only (the rig's own writes, made
// as the admin, are not logged). Counting the audit log per user, verb and resource over a window
// gives the requests per second each component causes, as the server saw them.
import { closeSync, openSync, readSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";

/** The rig's requesters: the real agent, the operator, and the 999 simulated agents together. */
export const REQUESTERS = ["sluice-agent", "sluice-operator", "sluice-sim-agents"] as const;
export type Requester = (typeof REQUESTERS)[number];

export interface RequesterSetup {
  /** kube-apiserver flags: the token file and the audit log. */
  apiserverArgs: string[];
  auditLog: string;
  tokens: Record<Requester, string>;
}

export function requesterSetup(dir: string, runId: string): RequesterSetup {
  const tokens = Object.fromEntries(
    REQUESTERS.map((u, i) => [u, `scale-${runId}-${i}-${Math.random().toString(36).slice(2)}`]),
  ) as Record<Requester, string>;
  const tokenFile = join(dir, "tokens.csv");
  writeFileSync(
    tokenFile,
    `${REQUESTERS.map((u) => `${tokens[u]},${u},${u},"system:masters"`).join("\n")}\n`,
    { mode: 0o600 },
  );
  const policyFile = join(dir, "audit-policy.yaml");
  writeFileSync(
    policyFile,
    JSON.stringify({
      apiVersion: "audit.k8s.io/v1",
      kind: "Policy",
      omitStages: ["RequestReceived"],
      rules: [{ level: "Metadata", users: [...REQUESTERS] }, { level: "None" }],
    }),
  );
  const auditLog = join(dir, "audit.log");
  return {
    apiserverArgs: [
      `--token-auth-file=${tokenFile}`,
      `--audit-policy-file=${policyFile}`,
      `--audit-log-path=${auditLog}`,
      "--audit-log-mode=batch",
      "--audit-log-batch-max-wait=1s",
    ],
    auditLog,
    tokens,
  };
}

/** A kubeconfig for the same server as `admin`, authenticating as a requester's token. */
export function requesterKubeconfig(adminPath: string, token: string, outPath: string): string {
  const admin = new KubeConfig();
  admin.loadFromFile(adminPath);
  const cluster = admin.getCurrentCluster();
  if (!cluster) throw new Error(`${adminPath}: no current cluster`);
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [cluster],
    users: [{ name: "scale", token }],
    contexts: [{ name: "scale", cluster: cluster.name, user: "scale" }],
    currentContext: "scale",
  });
  writeFileSync(outPath, kc.exportConfig(), { mode: 0o600 });
  return outPath;
}

export interface RequestCounts {
  /** user → "verb resource[/subresource]" → requests */
  byUser: Map<string, Map<string, number>>;
  total(user: string): number;
}

interface AuditEvent {
  stage?: string;
  verb?: string;
  user?: { username?: string };
  objectRef?: { resource?: string; subresource?: string };
  stageTimestamp?: string;
}

/**
 * Reads the audit log incrementally. A request is counted once: a watch when its response starts
 * (it may run for minutes), anything else when its response completes.
 */
export class AuditCounter {
  private readonly path: string;
  private offset = 0;
  private partial = "";

  constructor(path: string) {
    this.path = path;
  }

  /** Skips what is logged so far (the start of a window). */
  mark(): void {
    this.read();
  }

  /** Requests logged since the last mark()/read(). */
  read(): RequestCounts {
    const byUser = new Map<string, Map<string, number>>();
    let size = 0;
    try {
      size = statSync(this.path).size;
    } catch {
      // No request logged yet.
    }
    if (size > this.offset) {
      const fd = openSync(this.path, "r");
      try {
        const buf = Buffer.alloc(size - this.offset);
        readSync(fd, buf, 0, buf.length, this.offset);
        this.offset = size;
        const text = this.partial + buf.toString("utf8");
        const lines = text.split("\n");
        this.partial = lines.pop() ?? "";
        for (const line of lines) {
          if (!line) continue;
          const e = JSON.parse(line) as AuditEvent;
          const watch = e.verb === "watch";
          if (e.stage !== (watch ? "ResponseStarted" : "ResponseComplete")) continue;
          const user = e.user?.username ?? "?";
          const res = e.objectRef?.resource
            ? `${e.objectRef.resource}${e.objectRef.subresource ? `/${e.objectRef.subresource}` : ""}`
            : "(non-resource)";
          const key = `${e.verb} ${res}`;
          let m = byUser.get(user);
          if (!m) {
            m = new Map();
            byUser.set(user, m);
          }
          m.set(key, (m.get(key) ?? 0) + 1);
        }
      } finally {
        closeSync(fd);
      }
    }
    return {
      byUser,
      total: (user) => [...(byUser.get(user)?.values() ?? [])].reduce((a, b) => a + b, 0),
    };
  }
}
