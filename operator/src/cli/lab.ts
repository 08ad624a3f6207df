// `sluice lab run|up|probe|status|down|clean`:
//   run    builds the topology of the files as network namespaces, enforces the files' policies with
//          one static agent per node, probes every pod from every other pod, prints the matrix,
//          removes it all;
//   up     starts a lab that stays: a local API server, the operator and one Kubernetes-mode agent per
//          node, with the topology registered; prints the KUBECONFIG to `kubectl apply` policies with;
//   probe  probes the lab that is up (same output as run); down removes it; clean removes what runs
//          killed with -9 left behind.
import { parseArgs } from "node:util";
import { parsePorts } from "../api/matrix-rows.ts";
import { loadObjects } from "../lab/inputs.ts";
import { Lab } from "../lab/lab.ts";
import { cleanStaleRuns } from "../lab/stale.ts";
import { topologyFromObjects } from "../lab/topology.ts";
import {
  allowLocalhostOption,
  inputFiles,
  needRoot,
  outputFormat,
  printReport,
  probeOptions,
  usage,
} from "./lab-args.ts";
import { labDown, labProbe, labServe, labStatus, labUp } from "./lab-up.ts";

export async function labMain(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "run":
      return labRun(rest);
    case "up":
      return labUp(rest);
    case "serve":
      return labServe(rest);
    case "probe":
      return labProbe(rest);
    case "status":
      return labStatus(rest);
    case "down":
      return labDown(rest);
    case "clean":
      return labClean();
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(`${usage}\n`);
      return 0;
    default:
      process.stderr.write(`${usage}\n`);
      return 2;
  }
}

async function labClean(): Promise<number> {
  needRoot("clean");
  const r = await cleanStaleRuns();
  process.stdout.write(
    `removed ${r.runs.length} stale lab runs (${r.netns.length} namespaces, ${r.killed} processes)\n`,
  );
  for (const e of r.errors) process.stderr.write(`error: ${e}\n`);
  return r.errors.length > 0 ? 1 : 0;
}

async function labRun(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      ...probeOptions,
      file: { type: "string", short: "f", multiple: true },
      "no-agent": { type: "boolean", default: false },
      "allow-localhost": { type: "string" },
    },
    strict: true,
  });
  const files = inputFiles(values.file);
  const output = outputFormat(values.output);
  const allowLocalhost = allowLocalhostOption(values["allow-localhost"]);
  needRoot("run");
  const ports = values.ports ? parsePorts(values.ports) : undefined;
  const topology = topologyFromObjects(loadObjects(files));
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
