// `sluice operator --kubeconfig <path> [--lease-namespace ns] [--identity-gc-grace 5m] [--id <replica id>]`:
// runs the operator (identities, policy status) until SIGTERM/SIGINT, releasing its lease on the way out.
import { parseArgs } from "node:util";
import { loadKubeConfig, makeClients } from "../kube/client.ts";
import { Operator } from "../controllers/run.ts";
import { parseDuration } from "./duration.ts";

const usage =
  "usage: sluice operator [--kubeconfig <path>] [--lease-namespace <ns>] [--identity-gc-grace 5m] [--id <replica id>] [--lease-duration 15s]";

export async function operatorMain(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      kubeconfig: { type: "string" },
      "lease-namespace": { type: "string", default: process.env.POD_NAMESPACE ?? "kube-system" },
      "lease-name": { type: "string", default: "sluice-operator" },
      "identity-gc-grace": { type: "string", default: "5m" },
      "lease-duration": { type: "string", default: "15s" },
      id: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const leaseDurationMs = parseDuration(values["lease-duration"], "--lease-duration");
  if (leaseDurationMs < 3000) throw new Error("--lease-duration: must be at least 3s");
  if (leaseDurationMs % 1000 !== 0)
    throw new Error("--lease-duration: must be whole seconds (a Lease stores its duration in seconds)");
  const kc = loadKubeConfig(values.kubeconfig ?? process.env.KUBECONFIG);
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  const op = new Operator({
    clients: makeClients(kc),
    leaseNamespace: values["lease-namespace"],
    leaseName: values["lease-name"],
    id: values.id,
    identityGcGraceMs: parseDuration(values["identity-gc-grace"], "--identity-gc-grace"),
    // client-go's proportions: renew deadline 2/3 and retry period 2/15 of the lease duration.
    leaseDurationMs,
    renewDeadlineMs: Math.round((leaseDurationMs * 2) / 3),
    retryPeriodMs: Math.round((leaseDurationMs * 2) / 15),
    log,
  });
  log(`sluice operator ${op.id}: lease ${values["lease-namespace"]}/${values["lease-name"]}`);
  op.start();
  await new Promise<void>((resolve) => {
    const done = () => resolve();
    process.once("SIGTERM", done);
    process.once("SIGINT", done);
  });
  log(`sluice operator ${op.id}: stopping`);
  await op.stop();
  return 0;
}
