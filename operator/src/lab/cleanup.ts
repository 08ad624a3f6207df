// Teardown that must run however the lab ends: normal return, thrown error, SIGINT/SIGTERM. Each
// registered action runs once; on a signal the process exits after the actions with 128+signo.
import { killAllChildrenNow } from "./children.ts";

type Action = () => Promise<void>;

const actions = new Set<Action>();
let installed = false;
let exiting = false;

async function onSignal(signal: NodeJS.Signals): Promise<void> {
  if (exiting) return; // a second Ctrl-C while cleaning up: let the cleanup finish
  exiting = true;
  process.stderr.write(`\nsluice lab: ${signal}: cleaning up\n`);
  for (const a of [...actions]) {
    try {
      await a();
    } catch (err) {
      process.stderr.write(`sluice lab: cleanup: ${(err as Error).message}\n`);
    }
  }
  process.exit(signal === "SIGINT" ? 130 : 143);
}

export function registerCleanup(action: Action): () => void {
  if (!installed) {
    installed = true;
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    process.on("SIGHUP", onSignal);
    process.on("exit", killAllChildrenNow);
  }
  actions.add(action);
  return () => {
    actions.delete(action);
  };
}
