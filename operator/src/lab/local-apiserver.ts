// A real kube-apiserver + embedded etcd on the host's loopback (test/apiserver, built once by
// scripts/apiserver-build.sh and cached): what `sluice lab up`, the integration tests, the benchmarks
// and the demo run against. The server prints one JSON line when it is ready and removes its
// directory and kubeconfig when it stops.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { fileTail } from "./children.ts";

export const REPO_ROOT = fileURLToPath(new URL("../../..", import.meta.url)).replace(/\/$/, "");

export interface LocalApiServer {
  kubeconfigPath: string;
  /** https URL of the API server. */
  server: string;
  /** Milliseconds from spawn to the ready line. */
  startupMs: number;
  pid: number;
  /** The server's work directory (certificates, etcd data, log). */
  dir: string;
  stop(): Promise<void>;
}

export interface LocalApiServerOptions {
  /** kube-apiserver --authorization-mode; the admin is in system:masters either way. Default RBAC. */
  authorizationMode?: "RBAC" | "AlwaysAllow";
  /** Extra kube-apiserver flags, e.g. ["--feature-gates=..."]. */
  extraArgs?: string[];
  /** How long to wait for the ready line. Default 120 s. */
  timeoutMs?: number;
  /** Work directory (created; removed when the server stops). Default: a new temp dir. */
  dir?: string;
  /** Where the kubeconfig goes. Default: <dir>/kubeconfig. */
  kubeconfigPath?: string;
  /** Run inside this network namespace (/run/netns/NAME) instead of the host's. */
  netns?: string;
  /** Serve a real cluster's node (test/cluster): listen on and advertise this address (-node-address). */
  nodeAddress?: string;
  /** Secure port (default: any free one). */
  port?: number;
}

interface ReadyLine {
  ready: boolean;
  kubeconfig: string;
  server: string;
  pid: number;
  startupMs: number;
}

const built = new Map<string, Promise<string>>();

/**
 * Runs a build script of scripts/ once per process and resolves with the path it prints last (the
 * scripts cache their output per machine and source change, so only the first run is slow).
 */
export function builtPath(script: string): Promise<string> {
  let p = built.get(script);
  if (p) return p;
  p = new Promise<string>((resolveBuilt, reject) => {
    const child = spawn("bash", [join(REPO_ROOT, "scripts", script)], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      const path = out.trim().split("\n").pop() ?? "";
      if (code === 0 && path && existsSync(path)) resolveBuilt(path);
      else reject(new Error(`scripts/${script} failed (exit ${code}); see its output above`));
    });
  });
  built.set(script, p);
  p.catch(() => built.delete(script));
  return p;
}

/** Path of the cached API server binary, building it on first use. */
export function apiServerBinary(): Promise<string> {
  return builtPath("apiserver-build.sh");
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // SIGTERM (not SIGKILL) so the server still removes its directory after we are gone.
  process.on("exit", () => {
    for (const child of running) child.kill("SIGTERM");
  });
}

// The server is tied to this process (it gets SIGTERM when this process dies, also by SIGKILL), so
// nothing outlives its owner.
export async function startLocalApiServer(opts: LocalApiServerOptions = {}): Promise<LocalApiServer> {
  const binary = await apiServerBinary();
  let dir: string;
  if (opts.dir) {
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    dir = opts.dir;
  } else dir = await mkdtemp(join(tmpdir(), "sluice-apiserver-"));
  const kubeconfigPath = opts.kubeconfigPath ?? join(dir, "kubeconfig");
  const logPath = join(dir, "apiserver.log");
  const logFd = openSync(logPath, "a");
  // The server removes dir (log included) when it exits after a successful start, also when this
  // process dies first; after a failed start it leaves the log for the error message below.
  const args = [
    "-dir",
    dir,
    "-kubeconfig",
    kubeconfigPath,
    "-authorization-mode",
    opts.authorizationMode ?? "RBAC",
    "-exit-with-parent",
  ];
  if (opts.nodeAddress) args.push("-node-address", opts.nodeAddress);
  if (opts.port) args.push("-port", String(opts.port));
  if (opts.extraArgs?.length) args.push("--", ...opts.extraArgs);

  const started = performance.now();
  // nsenter execs the server, so -exit-with-parent still ties it to this process.
  const argv = opts.netns
    ? ["nsenter", `--net=/run/netns/${opts.netns}`, "--", binary, ...args]
    : [binary, ...args];
  const child = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", logFd] });
  closeSync(logFd);
  running.add(child);
  installExitHook();
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  child.once("exit", () => running.delete(child));

  let ready: ReadyLine;
  try {
    ready = await readyLine(child, opts.timeoutMs ?? 120_000, logPath);
  } catch (err) {
    child.kill("SIGKILL");
    await exited;
    const message = `${(err as Error).message}\n--- ${logPath} (tail) ---\n${fileTail(logPath, 40) || "(no log)"}`;
    await rm(dir, { recursive: true, force: true });
    throw new Error(message);
  }
  const startupMs = Math.round(performance.now() - started);
  // Do not keep the owner alive for the server's sake; the exit hook stops it.
  child.unref();
  (child.stdout as Readable & { unref?: () => void }).unref?.();

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 25_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  };
  return {
    kubeconfigPath: ready.kubeconfig,
    server: ready.server,
    startupMs,
    pid: child.pid ?? ready.pid,
    dir,
    stop,
  };
}

function readyLine(child: ChildProcess, timeoutMs: number, logPath: string): Promise<ReadyLine> {
  return new Promise((resolveReady, reject) => {
    let buf = "";
    const timer = setTimeout(
      () => finish(new Error(`API server not ready within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onExit = (code: number | null, signal: string | null) =>
      finish(new Error(`API server exited before ready (code ${code}, signal ${signal}); log: ${logPath}`));
    const onData = (d: string) => {
      buf += d;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line.startsWith("{")) continue;
        try {
          const parsed = JSON.parse(line) as ReadyLine;
          if (parsed.ready) finish(undefined, parsed);
        } catch {
          // not our line
        }
      }
    };
    function finish(err: Error | undefined, value?: ReadyLine): void {
      clearTimeout(timer);
      child.off("exit", onExit);
      child.stdout?.off("data", onData);
      if (err) reject(err);
      else if (value) resolveReady(value);
    }
    child.once("exit", onExit);
    child.stdout?.setEncoding("utf8").on("data", onData);
  });
}
