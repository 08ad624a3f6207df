// `sluice agent --node <name> --bpffs-root <dir> [--kubeconfig <path>]`, or with `--static -f <files>`.
// Runs until SIGTERM/SIGINT and leaves the datapath enforcing; in static mode SIGHUP re-reads the files.
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { KubeAgent } from "../agent/kube-agent.ts";
import { RouteInterfaceResolver } from "../agent/host-interfaces.ts";
import { installCniPlugin } from "../agent/cni-install.ts";
import { type EventSampling, writeEventSampling } from "../agent/event-config.ts";
import { StaticAgent } from "../agent/static-agent.ts";
import type { AttachMode } from "../datapath/kernel/links.ts";
import { loadDatapath } from "../datapath/kernel/programs.ts";
import type { AllowLocalhost } from "../policy/index.ts";
import { allowLocalhostOption } from "./lab-args.ts";

const usage =
  "usage: sluice agent --node <name> --bpffs-root <dir> [--kubeconfig <path>] [options]\n" +
  "       sluice agent --static -f <file or dir>... --node <name> --bpffs-root <dir> [--events] [options]\n" +
  "options: [--cni-socket <path>]   (Kubernetes mode: where the chained CNI plugin sluice-cni reaches the agent)\n" +
  "         [--cni-bin-dir <dir>]   (install sluice-cni there at start: the node's CNI binary directory)\n" +
  "         [--ready-file <path>] [--event-sample-allow N] [--event-sample-deny N] [--events-per-second N] [--object <bpf.o>]\n" +
  "         [--attach-mode auto|tcx|tc]   (auto: tcx links, tc filters where the kernel refuses tcx)\n" +
  "         [--allow-localhost always|policy]   (always, the default: the node reaches its own pods whatever\n" +
  "                                              the policies say; policy: where a policy allows entity host)";

function count(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`--${name}: ${JSON.stringify(v)} is not a non-negative integer`);
  return n;
}

export async function agentMain(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      static: { type: "boolean", default: false },
      kubeconfig: { type: "string" },
      file: { type: "string", short: "f", multiple: true },
      node: { type: "string" },
      "bpffs-root": { type: "string" },
      "ready-file": { type: "string" },
      "cni-socket": { type: "string" },
      "cni-bin-dir": { type: "string" },
      object: { type: "string" },
      events: { type: "boolean", default: false },
      "attach-mode": { type: "string", default: "auto" },
      "allow-localhost": { type: "string", default: "always" },
      "event-sample-allow": { type: "string" },
      "event-sample-deny": { type: "string" },
      "events-per-second": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const sampling: EventSampling = {
    sampleAllow: count(values["event-sample-allow"], "event-sample-allow", values.events ? 1 : 0),
    sampleDeny: count(values["event-sample-deny"], "event-sample-deny", values.events ? 1 : 0),
    perSecond: count(values["events-per-second"], "events-per-second", 1000),
  };
  const attachMode = values["attach-mode"];
  if (attachMode !== "auto" && attachMode !== "tcx" && attachMode !== "tc")
    throw new Error(`--attach-mode: ${JSON.stringify(attachMode)} is not one of auto, tcx, tc`);
  const allowLocalhost = allowLocalhostOption(values["allow-localhost"]) ?? "always";
  if (!values.node || !values["bpffs-root"] || (values.static && !values.file?.length)) {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  if (values.static && values["cni-socket"])
    throw new Error("--cni-socket: the chained CNI plugin needs the agent in Kubernetes mode (not --static)");
  if (values["cni-bin-dir"]) {
    if (!values["cni-socket"])
      throw new Error("--cni-bin-dir: the plugin it installs needs --cni-socket to reach the agent");
    await installCniPlugin(values["cni-bin-dir"]);
  }
  if (!values.static)
    return kubeAgent(
      values.node,
      values["bpffs-root"],
      values.kubeconfig,
      values["ready-file"],
      values.object,
      sampling,
      attachMode,
      allowLocalhost,
      values["cni-socket"],
    );
  const agent = await StaticAgent.start({
    files: values.file ?? [],
    node: values.node,
    pinRoot: values["bpffs-root"],
    objectPath: values.object,
    attachMode,
    readyFile: values["ready-file"],
    onEvent: values.events ? (line) => process.stdout.write(`${line}\n`) : undefined,
    sampling,
    allowLocalhost,
  });
  let reloading = Promise.resolve();
  process.on("SIGHUP", () => {
    reloading = reloading.then(async () => {
      try {
        await agent.reload();
      } catch (e) {
        // Never crash on a reload: the last good state stays enforced.
        process.stderr.write(
          `reload failed, keeping the last good state: ${e instanceof Error ? e.message : String(e)}\n`,
        );
      }
    });
  });
  await untilSignalled();
  await reloading;
  agent.close();
  return 0;
}

function untilSignalled(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
  });
}

async function kubeAgent(
  node: string,
  pinRoot: string,
  kubeconfig: string | undefined,
  readyFile: string | undefined,
  objectPath: string | undefined,
  sampling: EventSampling,
  attachMode: AttachMode | "auto",
  allowLocalhost: AllowLocalhost,
  cniSocket: string | undefined,
): Promise<number> {
  const datapath = loadDatapath({ pinRoot, objectPath, attachMode });
  writeEventSampling(datapath, sampling);
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  const agent = new KubeAgent({
    kubeconfig,
    node,
    pinRoot,
    datapath,
    resolver: new RouteInterfaceResolver(),
    log,
    allowLocalhost,
    cniSocket,
  });
  try {
    await agent.start();
    if (readyFile) writeFileSync(readyFile, JSON.stringify({ node }));
    log(`agent ready on node ${node}`);
    await untilSignalled();
    await agent.stop();
  } finally {
    datapath.close();
  }
  return 0;
}
