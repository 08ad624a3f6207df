// The state of a long-lived lab (`sluice lab up`): one directory, by default /run/sluice-lab/up
// (SLUICE_LAB_STATE_DIR overrides it), holding the supervisor's state file, its log, the control
// socket, the kubeconfig and the API server's data. The supervisor process owns it; `lab probe` and
// `lab down` talk to it over the socket, and `lab down` removes the leftovers itself when the
// supervisor is gone.
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import type { ProbeReport } from "./lab.ts";

export const DEFAULT_STATE_DIR = "/run/sluice-lab/up";

export function stateDir(): string {
  return process.env.SLUICE_LAB_STATE_DIR || DEFAULT_STATE_DIR;
}

export function statePaths(dir: string) {
  return {
    dir,
    state: join(dir, "state.json"),
    log: join(dir, "supervisor.log"),
    operatorLog: join(dir, "operator.log"),
    socket: join(dir, "control.sock"),
    kubeconfig: join(dir, "kubeconfig"),
    apiserverDir: join(dir, "apiserver"),
    kubectlCache: join(dir, "kubectl-cache"),
  };
}

export type UpPhase = "starting" | "ready" | "failed" | "stopping";

export interface UpState {
  phase: UpPhase;
  // The supervisor.
  pid: number;
  runId: string;
  files: string[];
  kubeconfig: string;
  server?: string;
  apiserverPid?: number;
  operatorPid?: number;
  nodes: string[];
  pods: string[];
  error?: string;
  // Nodes whose agent process runs (in `lab status` answers).
  agents?: string[];
  // Each node's agent monitor (unix:<path>), for `sluice monitor --lab`.
  monitors?: Record<string, string>;
  // Milliseconds from the supervisor's start to ready.
  readyMs?: number;
}

export function readState(dir: string): UpState | undefined {
  try {
    return JSON.parse(readFileSync(statePaths(dir).state, "utf8")) as UpState;
  } catch {
    return undefined;
  }
}

export function writeState(dir: string, state: UpState): void {
  const path = statePaths(dir).state;
  // Readers polling the file never see it half-written.
  writeFileSync(`${path}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

// A probe request carries the CLI's own flags: --ports as typed (the supervisor parses it) and --ipv6.
export type ControlRequest =
  | { op: "probe"; ports?: string; ipv6?: boolean }
  | { op: "status" }
  | { op: "down" };

export type ControlResponse =
  | { ok: true; report: ProbeReport }
  | { ok: true; state: UpState }
  | { ok: true; errors: string[] }
  | { ok: false; error: string };

// One request, one newline-terminated JSON answer.
export function control(dir: string, req: ControlRequest, timeoutMs = 180_000): Promise<ControlResponse> {
  const path = statePaths(dir).socket;
  if (!existsSync(path)) return Promise.reject(new Error(`no lab control socket at ${path}`));
  return new Promise((resolve, reject) => {
    const sock = connect({ path });
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`the lab supervisor did not answer ${req.op} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on("data", (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as ControlResponse);
      } catch (err) {
        reject(new Error(`the lab supervisor answered garbage: ${(err as Error).message}`));
      }
    });
    sock.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`lab control socket ${path}: ${err.message}`));
    });
    sock.on("close", () => {
      clearTimeout(timer);
      reject(new Error(`the lab supervisor closed the connection without answering ${req.op}`));
    });
  });
}
