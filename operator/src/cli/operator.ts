// `sluice operator --kubeconfig <path> [--lease-namespace ns] [--identity-gc-grace 5m] [--id <replica id>]
// [--metrics-addr :9963] [--log-level info] [--log-format json]`: runs the operator (identities,
// policy status) until SIGTERM/SIGINT, releasing its lease on the way out. Logs are pino JSON lines
// on stderr; /metrics, /healthz and /readyz are served on --metrics-addr ("0" turns them off).
import { makeClients } from "../kube/client.ts";
import { kubeConfigFromFlags, kubeOptions } from "./kube-flags.ts";
import { Operator } from "../controllers/run.ts";
import { OperatorMetrics } from "../controllers/metrics.ts";
import { EventLoopCheck } from "../observe/health.ts";
import { createLogger, logArgOptions, logSettings, logUsage } from "../observe/log.ts";
import { newRegistry, ObserveServer, parseListenAddress } from "../observe/server.ts";
import { parseDuration } from "./duration.ts";
import { flagValue, parseCommandArgs, UsageError } from "./usage.ts";

const usage =
  "usage: sluice operator [--kubeconfig <path>] [--context <name>] [--lease-namespace <ns>] [--identity-gc-grace 5m] [--id <replica id>] [--lease-duration 15s]\n" +
  "         [--metrics-addr :9963] (/metrics, /healthz, /readyz; 0 disables)\n" +
  `         ${logUsage}`;

export async function operatorMain(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: [...argv],
      options: {
        ...kubeOptions,
        "lease-namespace": { type: "string", default: process.env.POD_NAMESPACE ?? "kube-system" },
        "lease-name": { type: "string", default: "sluice-operator" },
        "identity-gc-grace": { type: "string", default: "5m" },
        "lease-duration": { type: "string", default: "15s" },
        id: { type: "string" },
        "metrics-addr": { type: "string", default: ":9963" },
        ...logArgOptions,
      },
      strict: true,
    },
    usage,
  );
  const leaseDurationMs = flagValue(() => parseDuration(values["lease-duration"], "--lease-duration"));
  if (leaseDurationMs < 3000) throw new UsageError("--lease-duration: must be at least 3s");
  if (leaseDurationMs % 1000 !== 0)
    throw new UsageError("--lease-duration: must be whole seconds (a Lease stores its duration in seconds)");
  const identityGcGraceMs = flagValue(() =>
    parseDuration(values["identity-gc-grace"], "--identity-gc-grace"),
  );
  const listen = parseListenAddress(values["metrics-addr"]);
  const log = await createLogger({ ...logSettings(values), base: { component: "operator" } });
  const kc = kubeConfigFromFlags(values);
  const registry = newRegistry();
  const op = new Operator({
    clients: makeClients(kc),
    leaseNamespace: values["lease-namespace"],
    leaseName: values["lease-name"],
    id: values.id,
    identityGcGraceMs,
    // client-go's proportions: renew deadline 2/3 and retry period 2/15 of the lease duration.
    leaseDurationMs,
    renewDeadlineMs: Math.round((leaseDurationMs * 2) / 3),
    retryPeriodMs: Math.round((leaseDurationMs * 2) / 15),
    log,
    metrics: new OperatorMetrics(registry),
  });
  const eventLoop = new EventLoopCheck();
  // Serving before the informers start: /readyz answers 503 with the reason while they sync.
  const server = listen
    ? await ObserveServer.start({
        listen,
        registry,
        live: [eventLoop, ...op.liveness()],
        ready: op.readiness(),
      })
    : undefined;
  log.info(
    {
      id: op.id,
      lease: `${values["lease-namespace"]}/${values["lease-name"]}`,
      metrics_addr: server ? `${server.address.host}:${server.address.port}` : "off",
    },
    "sluice operator starting",
  );
  op.start();
  await new Promise<void>((resolve) => {
    const done = () => resolve();
    process.once("SIGTERM", done);
    process.once("SIGINT", done);
  });
  log.info({ id: op.id }, "stopping");
  const t0 = performance.now();
  await op.stop();
  await server?.close();
  eventLoop.close();
  log.info({ id: op.id, stop_ms: Math.round(performance.now() - t0) }, "stopped");
  return 0;
}
