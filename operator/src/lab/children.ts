// The lab's child processes (pod servers, probers, agents, traffic senders), each in its own process
// group so a Ctrl-C at the terminal reaches only the lab, which then stops them itself.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const NODE = process.execPath;
export const NODE_FLAGS = ["--disable-warning=ExperimentalWarning"];

export function labScript(name: string): string {
  return fileURLToPath(new URL(`./${name}`, import.meta.url));
}

export const SLUICE_MAIN = fileURLToPath(new URL("../cli/main.ts", import.meta.url));

export interface Child {
  proc: ChildProcess;
  name: string;
  // Last lines of stderr, for error messages.
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const live = new Set<Child>();

// A spawned process as a Child, known to killAllChildrenNow until it exits.
function track(proc: ChildProcess, name: string, stderr: () => string, onError?: (e: Error) => void): Child {
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on("error", (e) => {
      onError?.(e);
      resolve({ code: -1, signal: null });
    });
    proc.on("close", (code, signal) => resolve({ code, signal }));
  });
  const child: Child = { proc, name, stderr, exited };
  live.add(child);
  void exited.then(() => live.delete(child));
  return child;
}

// Runs argv inside a network namespace. nsenter execs the command, so the pid is the command's. env:
// added to this process's environment.
export function spawnIn(
  netns: string,
  name: string,
  argv: readonly string[],
  env?: Readonly<Record<string, string>>,
): Child {
  const proc = spawn("nsenter", [`--net=/run/netns/${netns}`, "--", ...argv], {
    stdio: ["pipe", "pipe", "pipe"],
    detached: true,
    ...(env && { env: { ...process.env, ...env } }),
  });
  let err = "";
  proc.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err = (err + d).slice(-4000);
  });
  proc.stdin?.on("error", () => {});
  return track(
    proc,
    name,
    () => err.trim(),
    (e) => {
      err += `\n${e.message}`;
    },
  );
}

// The last lines of a log file ("" when it cannot be read).
export function fileTail(path: string, lines: number): string {
  try {
    return readFileSync(path, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

// Runs argv on the host in its own process group, its stdout and stderr appended to logPath.
export function spawnLogged(name: string, argv: readonly string[], logPath: string): Child {
  const fd = openSync(logPath, "a");
  try {
    const proc = spawn(argv[0], argv.slice(1), { stdio: ["ignore", fd, fd], detached: true });
    return track(proc, name, () => fileTail(logPath, 5));
  } finally {
    closeSync(fd);
  }
}

export function signalChild(child: Child, signal: NodeJS.Signals): void {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null || child.proc.pid === undefined) return;
  try {
    process.kill(-child.proc.pid, signal);
  } catch {
    // already gone
  }
}

// SIGTERM, then SIGKILL after graceMs; resolves when the process has exited.
export async function stopChild(child: Child, graceMs = 5000): Promise<void> {
  signalChild(child, "SIGTERM");
  const timer = setTimeout(() => signalChild(child, "SIGKILL"), graceMs);
  await child.exited;
  clearTimeout(timer);
}

// Synchronous last resort at process exit: nothing may outlive the lab.
export function killAllChildrenNow(): void {
  for (const c of live) signalChild(c, "SIGKILL");
}

// Resolves with the first stdout line, or rejects if the process exits or the time runs out first.
export function firstLine(child: Child, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = "";
    const stdout = child.proc.stdout!;
    stdout.setEncoding("utf8");
    const onData = (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        done();
        resolve(buf.slice(0, nl));
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${child.name}: no answer within ${timeoutMs} ms${tail(child)}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      stdout.off("data", onData);
    };
    stdout.on("data", onData);
    void child.exited.then(({ code, signal }) => {
      done();
      reject(new Error(`${child.name}: exited (${signal ?? `code ${code}`})${tail(child)}`));
    });
  });
}

export function tail(child: Child): string {
  const e = child.stderr();
  return e ? `: ${e.split("\n").slice(-5).join(" | ")}` : "";
}

// Collects a child's whole stdout and waits for it to exit 0.
export async function collect(child: Child, input: string, timeoutMs: number): Promise<string> {
  let out = "";
  child.proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.proc.stdin!.end(input);
  const timer = setTimeout(() => signalChild(child, "SIGKILL"), timeoutMs);
  const { code, signal } = await child.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${child.name}: exited (${signal ?? `code ${code}`})${tail(child)}`);
  return out;
}
