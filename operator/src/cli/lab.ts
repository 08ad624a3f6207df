// `sluice lab run|up|probe|status|down|clean`:
//   run    builds the topology of the files as network namespaces, enforces the files' policies with
//          one static agent per node, probes every pod from every other pod, prints the matrix,
//          removes it all;
//   up     starts a lab that stays: a local API server, the operator and one Kubernetes-mode agent per
//          node, with the topology registered; prints the KUBECONFIG to `kubectl apply` policies with;
//   probe  probes the lab that is up (same output as run); down removes it; clean removes what runs
//          killed with -9 left behind.
import { parsePorts } from "../api/matrix-rows.ts";
import { loadObjects } from "../manifests/load.ts";
import { Lab } from "../lab/lab.ts";
import { cleanStaleRuns } from "../lab/stale.ts";
import { topologyFromObjects } from "../lab/topology.ts";
import type { labSubcommands } from "./commands.ts";
import {
  allowLocalhostOption,
  inputFiles,
  labUsage,
  needRoot,
  printReport,
  probeOptions,
} from "./lab-args.ts";
import { labDown, labProbe, labServe, labStatus, labUp } from "./lab-up.ts";
import { outputFormat, plural } from "./output.ts";
import { dispatch, flagValue, parseCommandArgs, type Subcommand } from "./usage.ts";

const subcommands: Record<(typeof labSubcommands)[number], Subcommand> = {
  run: { usage: labUsage.run, run: labRun },
  up: { usage: labUsage.up, run: labUp },
  probe: { usage: labUsage.probe, run: labProbe },
  status: { usage: labUsage.status, run: labStatus },
  down: { usage: labUsage.down, run: labDown },
  clean: { usage: labUsage.clean, run: labClean },
};

export async function labMain(argv: readonly string[]): Promise<number> {
  // serve: the supervisor `lab up` starts, not for people.
  return dispatch("lab", subcommands, argv, { serve: labServe });
}

async function labClean(argv: readonly string[]): Promise<number> {
  parseCommandArgs({ args: [...argv], options: {}, strict: true }, labUsage.clean);
  needRoot();
  const r = await cleanStaleRuns();
  process.stdout.write(
    `removed ${plural(r.runs.length, "stale lab run")} (${plural(r.netns.length, "namespace")}, ${plural(r.killed, "process", "processes")})\n`,
  );
  for (const e of r.errors) process.stderr.write(`error: ${e}\n`);
  return r.errors.length > 0 ? 1 : 0;
}

async function labRun(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: [...argv],
      options: {
        ...probeOptions,
        file: { type: "string", short: "f", multiple: true },
        "no-agent": { type: "boolean", default: false },
        "allow-localhost": { type: "string" },
      },
      strict: true,
    },
    labUsage.run,
  );
  const output = outputFormat(values.output);
  const allowLocalhost = allowLocalhostOption(values["allow-localhost"]);
  const ports = values.ports ? flagValue(() => parsePorts(values.ports ?? "")) : undefined;
  const files = inputFiles(values.file);
  needRoot();
  // The paths as given: the loader's messages point where the user typed.
  const topology = topologyFromObjects(loadObjects(values.file ?? []));
  const log = (line: string) => {
    if (values.verbose || output === "table") process.stderr.write(`${line}\n`);
  };
  const lab = await Lab.create(topology, { extraPorts: ports, log, allowLocalhost });
  try {
    if (!values["no-agent"]) await lab.startAgents(files);
    const report = await lab.probe({ ports, family: values.ipv6 ? 6 : undefined });
    printReport(report, output, (line) =>
      log(`${line}${values["no-agent"] ? ", no enforcement (--no-agent)" : ""}`),
    );
  } finally {
    await lab.destroy();
  }
  return 0;
}
