// The real `sluice operator` as a separate process (the CLI the chart runs), against the rig's API
// server as its own user, with its metrics on a free loopback port found in its start line. Its
// resident memory is read from /proc (the whole process, as a container limit would see it).
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { NODE, NODE_FLAGS, SLUICE_MAIN } from "../../operator/src/lab/children.ts";
import { parseSamples, type Sample } from "../support/prometheus.ts";

export class OperatorProcess {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  private metricsBase: string | undefined;
  private readonly exited: Promise<number | null>;

  /**
   * main: the `sluice` entry point (the sources' cli/main.ts, or a bundle's main.mjs); env: added to
   * this process's environment.
   */
  constructor(
    kubeconfig: string,
    gcGrace: string,
    runId: string,
    main = SLUICE_MAIN,
    env: Readonly<Record<string, string>> = {},
  ) {
    this.proc = spawn(
      NODE,
      [
        ...NODE_FLAGS,
        main,
        "operator",
        "--kubeconfig",
        kubeconfig,
        "--lease-namespace",
        "default",
        "--lease-name",
        `scale-${runId}`,
        "--identity-gc-grace",
        gcGrace,
        "--metrics-addr",
        "127.0.0.1:0",
        "--log-format",
        "json",
      ],
      { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...env } },
    );
    this.exited = new Promise((resolve) => this.proc.once("exit", (code) => resolve(code)));
    createInterface({ input: this.proc.stderr! }).on("line", (l) => {
      this.lines.push(l);
      if (this.lines.length > 5000) this.lines.splice(0, 1000);
      if (!this.metricsBase && l.includes("sluice operator starting")) {
        const addr = (JSON.parse(l) as { metrics_addr?: string }).metrics_addr;
        if (addr) this.metricsBase = `http://${addr}`;
      }
    });
  }

  async get(path: string): Promise<{ status: number; body: string }> {
    if (!this.metricsBase) throw new Error("operator: no metrics address yet");
    const r = await fetch(this.metricsBase + path);
    return { status: r.status, body: await r.text() };
  }

  async metrics(): Promise<Sample[]> {
    return parseSamples((await this.get("/metrics")).body);
  }

  rssBytes(): number {
    return rssOf(this.proc.pid ?? 0);
  }

  tail(n = 20): string {
    return this.lines.slice(-n).join("\n");
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGTERM");
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(t);
  }
}

/** VmRSS of a process, in bytes (0 when gone). */
export function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** The value of one sample (summed over series matching the labels). */
export function sampleValue(
  samples: readonly Sample[],
  name: string,
  labels: Record<string, string> = {},
): number {
  let sum = 0;
  for (const s of samples)
    if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  return sum;
}
