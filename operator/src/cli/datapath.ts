// `sluice datapath replace|show|remove --bpffs-root <dir>`: live replacement, inspection and removal of
// a node's pinned datapath.
import { rmSync } from "node:fs";
import { removeDatapath, replaceAll } from "../datapath/kernel/attachments.ts";
import { loadAddon } from "../datapath/kernel/bpf-addon.ts";
import { dirOfCode, verdictOfCode } from "../datapath/codec/keys.ts";
import { enums } from "../datapath/codec/layout.generated.ts";
import { openPinnedMaps } from "../datapath/kernel/maps.ts";
import { DatapathPins } from "../datapath/kernel/pins.ts";
import { loadDatapath } from "../datapath/kernel/programs.ts";
import { readVerdictCounters } from "../datapath/kernel/verdicts.ts";
import { readApplied, readRuleCounterTable, viewApplied } from "../datapath/writer/sync.ts";
import { countsOf } from "../stats/rule-stats.ts";
import type { datapathSubcommands } from "./commands.ts";
import { type OutputFormat, outputFormat, outputOption, plural, writeOutput } from "./output.ts";
import { dispatch, parseCommandArgs, type Subcommand, UsageError } from "./usage.ts";

const usage: Record<(typeof datapathSubcommands)[number], string> = {
  show: "usage: sluice datapath show --bpffs-root <dir> [-o table|json|yaml]",
  replace:
    "usage: sluice datapath replace --bpffs-root <dir> [--times N] [--object <bpf.o>] [-o json|yaml|table]   (default json)",
  remove: "usage: sluice datapath remove --bpffs-root <dir>",
};

// Loads the object twice (two program instances sharing the pinned maps) and swaps every endpoint's
// program between them `times` times: each swap is one bpf_link_update, as an agent upgrade does.
function replace(
  pins: DatapathPins,
  times: number,
  objectPath: string | undefined,
  output: OutputFormat,
): number {
  const root = pins.root;
  const older = pins.olderLayoutMaps();
  const before = new Set(pins.names());
  const a = loadDatapath({ pinRoot: root, objectPath });
  const b = loadDatapath({ pinRoot: root, objectPath });
  try {
    // The links run programs of an older layout, whose state is in maps this object does not read: its
    // own maps (just created, empty) know no endpoint, and a program that knows none lets every packet
    // through. The agent of this version migrates such a node; this command must not swap.
    if (older.length > 0 && a.maps.endpoints.count() === 0) {
      for (const name of pins.names()) if (!before.has(name)) rmSync(pins.map(name), { force: true });
      throw new Error(
        `--bpffs-root ${root}: the datapath pinned there is of an older map layout (${older.join(", ")}); ` +
          "these programs would find no endpoint and let every packet through. Restart the node's agent " +
          "with this version instead: it writes the new maps, swaps the programs and carries the state over",
      );
    }
    const t0 = performance.now();
    let replacements = 0;
    for (let i = 0; i < times; i++) replacements += replaceAll(i % 2 === 0 ? a : b);
    const durationMs = performance.now() - t0;
    const links = pins.links().length;
    const unreachable = links * times - replacements;
    if (unreachable > 0)
      // A tc filter is found by its device's name, which only means something in the device's
      // network namespace; tcx links are found through their pins from anywhere.
      process.stderr.write(
        `warning: ${plural(unreachable / times, "tc filter")} not replaced: their devices are not in this network namespace (run it where the agent runs)\n`,
      );
    writeOutput(
      output,
      { replacements, links, durationMs },
      () =>
        `${plural(replacements, "replacement")} of ${plural(links, "link")} in ${durationMs.toFixed(1)} ms`,
    );
    return 0;
  } finally {
    a.close();
    b.close();
  }
}

const D = enums.sl_dir;
const V = enums.sl_verdict;

function show(pins: DatapathPins, output: OutputFormat): number {
  const addon = loadAddon();
  const maps = openPinnedMaps(addon, pins);
  try {
    const applied = readApplied(maps);
    const view = viewApplied(applied);
    const counters = [];
    for (const ep of applied.endpoints.values())
      for (const dir of [D.SL_DIR_INGRESS, D.SL_DIR_EGRESS])
        for (const verdict of [V.SL_VERDICT_ALLOW, V.SL_VERDICT_DENY]) {
          const t = maps.counters.total(ep.slot, dir, verdict);
          if (t.packets === 0n) continue;
          counters.push({
            epId: ep.id,
            dir: dirOfCode(dir),
            verdict: verdictOfCode(verdict),
            packets: Number(t.packets),
            bytes: Number(t.bytes),
          });
        }
    const links = pins.links().map((l) => `${l.ifname}-${l.hook}`);
    const verdicts = readVerdictCounters({ maps }).filter((v) => v.packets > 0);
    // Per endpoint and rule (rule ids: the compiler's; names need the policies, `sluice stats` has them).
    const rules = readRuleCounterTable(maps, applied).map((r) => ({
      epId: r.epId,
      direction: r.direction,
      ruleId: r.ruleId,
      audit: r.audit,
      ...countsOf(r),
    }));
    if (output !== "table") {
      writeOutput(output, { ...view, counters, rules, verdicts, links }, () => "");
      return 0;
    }
    process.stdout.write(
      `links: ${links.join(" ") || "(none)"}\nipcache: ${plural(view.ipcache.length, "entry", "entries")}\n`,
    );
    for (const e of view.endpoints) {
      const dd = [e.defaultDeny.ingress ? "ingress" : "", e.defaultDeny.egress ? "egress" : ""]
        .filter(Boolean)
        .join("+");
      process.stdout.write(
        `endpoint ${e.id} ifindex ${e.ifindex} identity ${e.identity} gen ${e.gen} rev ${e.policyRev} ` +
          `default-deny ${dd || "none"}: ${plural(e.entries.length, "policy entry", "policy entries")}\n`,
      );
    }
    for (const c of counters)
      process.stdout.write(
        `counter ep ${c.epId} ${c.dir} ${c.verdict}: ${c.packets} pkts ${c.bytes} bytes\n`,
      );
    for (const r of rules)
      process.stdout.write(
        `rule ep ${r.epId} ${r.direction} ${r.ruleId === 0 ? "default" : `rule ${r.ruleId}`}` +
          `${r.audit ? " (audit)" : ""}: ${r.packets} pkts ${r.bytes} bytes ${r.flows} flows\n`,
      );
    for (const v of verdicts)
      process.stdout.write(
        `node ${v.direction} ${v.verdict} ${v.reason}: ${v.packets} pkts ${v.bytes} bytes\n`,
      );
    return 0;
  } finally {
    maps.close();
  }
}

// The flags every subcommand shares; each parses them with its own usage for -h/--help.
function parse(argv: string[], sub: keyof typeof usage) {
  const { values } = parseCommandArgs(
    {
      args: argv,
      options: {
        "bpffs-root": { type: "string" },
        ...(sub === "replace" ? { times: { type: "string" }, object: { type: "string" } } : {}),
        ...(sub === "remove" ? {} : outputOption),
      },
      strict: true,
    },
    usage[sub],
  ) as { values: { "bpffs-root"?: string; times?: string; object?: string; output?: string } };
  const root = values["bpffs-root"];
  if (!root) throw new UsageError("--bpffs-root is required");
  return { ...values, root };
}

const subcommands: Record<(typeof datapathSubcommands)[number], Subcommand> = {
  show: { usage: usage.show, run: async (argv) => run("show", argv) },
  replace: { usage: usage.replace, run: async (argv) => run("replace", argv) },
  remove: { usage: usage.remove, run: async (argv) => run("remove", argv) },
};

export async function datapathMain(argv: readonly string[]): Promise<number> {
  return dispatch("datapath", subcommands, argv);
}

function run(sub: keyof typeof usage, argv: string[]): number {
  const values = parse(argv, sub);
  const root = values.root;
  const output = outputFormat(values.output, sub === "replace" ? "json" : "table");
  const times = Number(values.times ?? "1");
  if (!Number.isInteger(times) || times < 1)
    throw new UsageError(`--times: ${JSON.stringify(values.times)} is not a positive integer`);
  const pins = new DatapathPins(root);
  if (sub !== "remove" && !pins.exists()) throw new Error(`--bpffs-root ${root}: no datapath pinned there`);
  if (sub === "replace") return replace(pins, times, values.object, output);
  if (sub === "show") return show(pins, output);
  // Unpinning the tcx links detaches their programs (nothing else holds them); unpinning the maps frees them.
  removeDatapath({ addon: loadAddon(), pins });
  return 0;
}
