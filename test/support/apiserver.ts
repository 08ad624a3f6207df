// A real kube-apiserver + etcd for integration tests, the lab and the demo (test/apiserver, built once
// by scripts/apiserver-build.sh and cached). With SLUICE_USE_KUBECONFIG=1 and KUBECONFIG set, the
// cluster KUBECONFIG names is used instead and nothing is started.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import type { Readable } from "node:stream";
import { KubeConfig } from "@kubernetes/client-node";

export const repoRoot = resolve(import.meta.dirname, "../..");

export interface ApiServer {
  kubeconfigPath: string;
  /** https URL of the API server. */
  server: string;
  /** Milliseconds from spawn to the ready line (0 for an external cluster). */
  startupMs: number;
  /** True when KUBECONFIG's cluster is used instead of a local server. */
  external: boolean;
  stop(): Promise<void>;
}

export interface StartApiServerOptions {
  /** kube-apiserver --authorization-mode; the admin is in system:masters either way. Default RBAC. */
  authorizationMode?: "RBAC" | "AlwaysAllow";
  /** Extra kube-apiserver flags, e.g. ["--feature-gates=..."]. */
  extraArgs?: string[];
  /** How long to wait for the ready line. Default 120 s. */
  timeoutMs?: number;
}

interface ReadyLine {
  ready: boolean;
  kubeconfig: string;
  server: string;
  startupMs: number;
}

let binaryPromise: Promise<string> | undefined;

/** Path of the cached binary, building it on first use (minutes, once per machine and source change). */
export function apiServerBinary(): Promise<string> {
  binaryPromise ??= new Promise((resolveBinary, reject) => {
    const child = spawn("bash", [join(repoRoot, "scripts/apiserver-build.sh")], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      const path = out.trim().split("\n").pop() ?? "";
      if (code === 0 && path && existsSync(path)) resolveBinary(path);
      else reject(new Error(`scripts/apiserver-build.sh failed (exit ${code}); see its output above`));
    });
  });
  binaryPromise.catch(() => {
    binaryPromise = undefined;
  });
  return binaryPromise;
}

function externalCluster(): ApiServer | undefined {
  const path = process.env.KUBECONFIG;
  if (process.env.SLUICE_USE_KUBECONFIG !== "1" || !path) return undefined;
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error(`KUBECONFIG ${path}: current context names no cluster server`);
  return { kubeconfigPath: path, server, startupMs: 0, external: true, stop: async () => {} };
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // SIGTERM (not SIGKILL) so the server still removes its temp dirs after we are gone.
  process.on("exit", () => {
    for (const child of running) child.kill("SIGTERM");
  });
}

function tail(path: string, lines = 40): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

export async function startApiServer(opts: StartApiServerOptions = {}): Promise<ApiServer> {
  const external = externalCluster();
  if (external) return external;

  const binary = await apiServerBinary();
  const dir = await mkdtemp(join(tmpdir(), "sluice-apiserver-"));
  const kubeconfigPath = join(dir, "kubeconfig");
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
  if (opts.extraArgs?.length) args.push("--", ...opts.extraArgs);

  const started = performance.now();
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", logFd] });
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
    const message = `${(err as Error).message}\n--- ${logPath} (tail) ---\n${tail(logPath)}`;
    await rm(dir, { recursive: true, force: true });
    throw new Error(message);
  }
  const startupMs = Math.round(performance.now() - started);
  // Do not keep the test process alive for the server's sake; the exit hook stops it.
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
  return { kubeconfigPath: ready.kubeconfig, server: ready.server, startupMs, external: false, stop };
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

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs .tooling/bin/kubectl (installed by scripts/setup.sh) against the given kubeconfig. */
export function kubectl(
  args: string[],
  kubeconfig: string,
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<KubectlResult> {
  const bin = join(repoRoot, ".tooling/bin/kubectl");
  if (!existsSync(bin)) {
    return Promise.reject(new Error(`${bin} is missing: run 'bash scripts/setup.sh' first`));
  }
  // kubectl caches discovery per host:port under ~/.kube/cache; ports are reused across runs, so a
  // server we started gets a cache of its own, removed with it.
  const cacheArgs = basename(dirname(kubeconfig)).startsWith("sluice-apiserver-")
    ? ["--cache-dir", join(dirname(kubeconfig), "kubectl-cache")]
    : [];
  return new Promise((resolveRun, reject) => {
    const child = execFile(
      bin,
      ["--kubeconfig", kubeconfig, ...cacheArgs, ...args],
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== "number") {
          reject(new Error(`kubectl ${args.join(" ")}: ${err.message}`));
          return;
        }
        resolveRun({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}
