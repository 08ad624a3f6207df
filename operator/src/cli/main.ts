// `sluice <command> ...`: dispatches to the table in commands.ts, and is the one place that turns what a
// command throws into output and an exit code: help to stdout (0), a usage error as one line naming the
// command and the flag (2), any other error as one line without a stack (1; SLUICE_DEBUG=1 shows it).
import { commands } from "./commands.ts";
import { commandOf, HelpRequested, usageErrorOf } from "./usage.ts";

function help(): string {
  const width = Math.max(...Object.keys(commands).map((k) => k.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return (
    `usage: sluice <command> [args]   (sluice <command> --help: the command's flags)\n\ncommands:\n${lines.join("\n")}\n` +
    `  ${"help".padEnd(width)}  this text\n\nsluice --version: the release and datapath layout version\n`
  );
}

async function run(name: string, argv: readonly string[]): Promise<number> {
  try {
    return await commands[name].run(argv);
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(`${err.usage}\n`);
      return 0;
    }
    const usage = usageErrorOf(err);
    if (usage) {
      process.stderr.write(`sluice ${usage.command ?? name}: ${usage.message}\n`);
      return 2;
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`sluice ${commandOf(err) ?? name}: ${message}\n`);
    if (process.env.SLUICE_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name) {
    process.stderr.write(help());
    return 2;
  }
  if (name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(help());
    return 0;
  }
  if (name === "--version") return run("version", rest);
  if (!Object.hasOwn(commands, name)) {
    process.stderr.write(`sluice: ${JSON.stringify(name)}: unknown command (sluice help lists them)\n`);
    return 2;
  }
  return run(name, rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`sluice: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
