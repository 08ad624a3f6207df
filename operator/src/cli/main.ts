// `sluice <command> ...`: dispatches to the table in commands.ts.
import { commands } from "./commands.ts";

function help(): string {
  const width = Math.max(...Object.keys(commands).map((k) => k.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: sluice <command> [args]\n\ncommands:\n${lines.join("\n")}\n  ${"help".padEnd(width)}  this text\n`;
}

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(help());
    return name ? 0 : 2;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`sluice: unknown command ${JSON.stringify(name)}\n\n${help()}`);
    return 2;
  }
  return cmd.run(rest);
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
