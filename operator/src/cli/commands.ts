// The `sluice` subcommands: name → entry point. Each entry point takes the arguments after the
// command name and resolves to the exit code. Imports are lazy so one command's dependencies
// (the BPF addon, the Kubernetes client) never load for another.
export interface Command {
  summary: string;
  run: (argv: readonly string[]) => Promise<number>;
  /** The subcommands, where the command has some: the dispatch tables are typed by these lists. */
  subcommands?: readonly string[];
}

// The one list of each command's subcommands: lab.ts, datapath.ts and probe.ts key their dispatch
// tables by these (the compiler checks they match) and the CLI test walks them.
export const labSubcommands = ["run", "up", "probe", "status", "down", "clean"] as const;
export const datapathSubcommands = ["show", "replace", "remove"] as const;
export const probeSubcommands = ["serve", "connect", "send", "stats"] as const;

export const commands: Record<string, Command> = {
  validate: {
    summary: "validate policy manifests (schema, CEL rules, semantics) for CI",
    run: async (argv) => (await import("./validate.ts")).validateMain(argv),
  },
  matrix: {
    summary: "pod-to-pod connectivity as the datapath would decide it, from manifests",
    run: async (argv) => (await import("./matrix.ts")).matrixMain(argv),
  },
  plan: {
    summary: "the connectivity rows a change of policies opens or closes",
    run: async (argv) => (await import("./plan.ts")).planMain(argv),
  },
  explain: {
    summary: "the verdict for one packet and the policies and rules that decide it",
    run: async (argv) => (await import("./explain.ts")).explainMain(argv),
  },
  monitor: {
    summary: "the nodes' verdicts as they happen, with the pods and the deciding policy rule",
    run: async (argv) => (await import("./monitor.ts")).monitorMain(argv),
  },
  stats: {
    summary: "packets, bytes and flows per policy rule, summed across the nodes",
    run: async (argv) => (await import("./stats.ts")).statsMain(argv),
  },
  lab: {
    summary: "network-namespace lab: sluice lab run|up|probe|status|down|clean",
    run: async (argv) => (await import("./lab.ts")).labMain(argv),
    subcommands: labSubcommands,
  },
  demo: {
    summary: "the demo: lab matrix before/after policies, live datapath replacement",
    run: async (argv) => (await import("./demo.ts")).demoMain(argv),
  },
  agent: {
    summary: "run the node agent (--static: policies and topology from manifest files)",
    run: async (argv) => (await import("./agent.ts")).agentMain(argv),
  },
  datapath: {
    summary: "inspect, live-replace or remove a node's pinned datapath",
    run: async (argv) => (await import("./datapath.ts")).datapathMain(argv),
    subcommands: datapathSubcommands,
  },
  operator: {
    summary: "run the operator (identities, policy status)",
    run: async (argv) => (await import("./operator.ts")).operatorMain(argv),
  },
  probe: {
    summary: "test traffic endpoints for clusters: sluice probe serve|connect|send|stats",
    run: async (argv) => (await import("./probe.ts")).probeMain(argv),
    subcommands: probeSubcommands,
  },
  version: {
    summary: "the release and the datapath layout version of this build",
    run: async (argv) => (await import("./version.ts")).versionMain(argv),
  },
};
