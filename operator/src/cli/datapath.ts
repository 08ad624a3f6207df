// `sluice datapath replace|show|remove --bpffs-root <dir>`: live replacement, inspection and removal of
// a node's pinned datapath.
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { detachAll, pinnedLinks, replaceAll } from "../agent/attachments.ts";
import { loadAddon } from "../datapath/kernel/bpf-addon.ts";
import { dirOfCode, verdictOfCode } from "../datapath/codec/keys.ts";
import { enums } from "../datapath/codec/layout.generated.ts";
import { openPinnedMaps } from "../datapath/kernel/maps.ts";
import { olderLayoutPins } from "../datapath/migrate.ts";
import { loadDatapath } from "../datapath/kernel/programs.ts";
import { readApplied, viewApplied } from "../datapath/writer/sync.ts";

const usage =
  "usage: sluice datapath replace --bpffs-root <dir> [--times N] [--object <bpf.o>]\n" +
  "       sluice datapath show --bpffs-root <dir> [-o json]\n" +
  "       sluice datapath remove --bpffs-root <dir>";

// Loads the object twice (two program instances sharing the pinned maps) and swaps every endpoint's
// program between them `times` times: each swap is one bpf_link_update, as an agent upgrade does.
function replace(root: string, times: number, objectPath: string | undefined): number {
  const older = olderLayoutPins(root);
  const before = new Set(readdirSync(root));
  const a = loadDatapath({ pinRoot: root, objectPath });
  const b = loadDatapath({ pinRoot: root, objectPath });
  try {
    // The links run programs of an older layout, whose state is in maps this object does not read: its
    // own maps (just created, empty) know no endpoint, and a program that knows none lets every packet
    // through. The agent of this version migrates such a node; this command must not swap.
    if (older.length > 0 && a.maps.endpoints.count() === 0) {
      for (const name of readdirSync(root)) if (!before.has(name)) rmSync(join(root, name), { force: true });
      throw new Error(
        `--bpffs-root ${root}: the datapath pinned there is of an older map layout (${older.join(", ")}); ` +
          "these programs would find no endpoint and let every packet through. Restart the node's agent " +
          "with this version instead: it writes the new maps, swaps the programs and carries the state over",
      );
    }
    const t0 = performance.now();
    let replacements = 0;
    for (let i = 0; i < times; i++) replacements += replaceAll(i % 2 === 0 ? a : b, root);
    const durationMs = performance.now() - t0;
    const links = pinnedLinks(root).length;
    const unreachable = links * times - replacements;
    if (unreachable > 0)
      // A tc filter is found by its device's name, which only means something in the device's
      // network namespace; tcx links are found through their pins from anywhere.
      process.stderr.write(
        `warning: ${unreachable / times} tc filters not replaced: their devices are not in this network namespace (run it where the agent runs)\n`,
      );
    process.stdout.write(`${JSON.stringify({ replacements, links, durationMs })}\n`);
    return 0;
  } finally {
    a.close();
    b.close();
  }
}

const D = enums.sl_dir;
const V = enums.sl_verdict;

function show(root: string, json: boolean): number {
  const addon = loadAddon();
  const maps = openPinnedMaps(addon, root);
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
    const links = pinnedLinks(root).map((l) => `${l.ifname}-${l.hook}`);
    if (json) {
      process.stdout.write(`${JSON.stringify({ ...view, counters, links })}\n`);
      return 0;
    }
    process.stdout.write(`links: ${links.join(" ") || "(none)"}\nipcache: ${view.ipcache.length} entries\n`);
    for (const e of view.endpoints) {
      const dd = [e.defaultDeny.ingress ? "ingress" : "", e.defaultDeny.egress ? "egress" : ""]
        .filter(Boolean)
        .join("+");
      process.stdout.write(
        `endpoint ${e.id} ifindex ${e.ifindex} identity ${e.identity} gen ${e.gen} rev ${e.policyRev} ` +
          `default-deny ${dd || "none"}: ${e.entries.length} policy entries\n`,
      );
    }
    for (const c of counters)
      process.stdout.write(
        `counter ep ${c.epId} ${c.dir} ${c.verdict}: ${c.packets} pkts ${c.bytes} bytes\n`,
      );
    return 0;
  } finally {
    maps.close();
  }
}

export async function datapathMain(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      "bpffs-root": { type: "string" },
      times: { type: "string", default: "1" },
      object: { type: "string" },
      output: { type: "string", short: "o", default: "text" },
    },
  });
  const root = values["bpffs-root"];
  if (!root || !["replace", "show", "remove"].includes(sub ?? "")) {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  if (sub !== "remove" && !existsSync(root))
    throw new Error(`--bpffs-root ${root}: no datapath pinned there`);
  if (sub === "replace") {
    const times = Number(values.times);
    if (!Number.isInteger(times) || times < 1)
      throw new Error(`--times: ${values.times} is not a positive integer`);
    return replace(root, times, values.object);
  }
  if (sub === "show") return show(root, values.output === "json");
  // tc filters live on their devices: delete them first. Unpinning the tcx links detaches their
  // programs (nothing else holds them); unpinning the maps frees them.
  if (existsSync(root)) detachAll({ addon: loadAddon() }, root);
  rmSync(root, { recursive: true, force: true });
  return 0;
}
