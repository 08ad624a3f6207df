// Runs the lab's helper commands (ip, nsenter) and turns failures into errors that name the command.
import { spawn } from "node:child_process";

export class CommandError extends Error {
  override name = "CommandError";
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: readonly string[], input?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", (err) => reject(new CommandError(`${cmd} ${args.join(" ")}: ${err.message}`)));
    child.on("close", (code, signal) => {
      if (code === 0) resolve({ stdout, stderr });
      else {
        const why = signal ? `killed by ${signal}` : `exit ${code}`;
        const detail = stderr.trim() || stdout.trim();
        reject(new CommandError(`${cmd} ${args.join(" ")}: ${why}${detail ? `: ${detail}` : ""}`));
      }
    });
    child.stdin.on("error", () => {}); // the command may exit before reading everything
    child.stdin.end(input ?? "");
  });
}

// Runs `ip -batch -` inside a namespace; the error carries the batch line that failed.
export async function ipBatch(netns: string, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  await run("ip", ["-n", netns, "-batch", "-"], `${lines.join("\n")}\n`);
}

// Runs fn over items with at most `limit` in flight; results keep the items' order.
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
