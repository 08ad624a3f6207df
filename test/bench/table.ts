// Markdown tables and small statistics shared by the benchmarks in this folder.

export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => (c ?? "").padEnd(widths[i])).join(" | ")} |`;
  return [line(header), `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`, ...rows.map(line)].join("\n");
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error("median of nothing");
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function ratio(x: number, base: number): string {
  return `${(x / base).toFixed(2)}×`;
}

// A line describing the machine, for the tables' headers and docs/performance.md.
export async function machine(): Promise<string> {
  const os = await import("node:os");
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  return `${os.cpus().length} vCPU (${cpu.trim()}), Linux ${os.release()}, Node ${process.version}`;
}

// Benchmarks create kernel objects: run them as root with bpffs, and say so plainly otherwise.
export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    console.error(`${what}: needs root (BPF, network namespaces); skipped`);
    process.exit(0);
  }
}
