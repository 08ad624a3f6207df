// The process behind `sluice lab up` (`sluice lab serve`, detached from the terminal): it owns the
// local API server, the operator, the lab (namespaces, pod servers, one Kubernetes-mode agent per
// node, the API bridge) and a control socket that `lab probe`, `lab status` and `lab down` use. Its
// state file says how far it got; on a failed start it removes everything but its state directory
// (so `lab up` can show the log) and exits non-zero.
import { rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { parsePorts, type ProbePort } from "../api/matrix-rows.ts";
import { loadKubeConfig, makeClients } from "../kube/client.ts";
import { type Child, NODE, NODE_FLAGS, SLUICE_MAIN, spawnLogged, stopChild } from "./children.ts";
import { registerCleanup } from "./cleanup.ts";
import { createLabCluster } from "./cluster-setup.ts";
import { loadObjects } from "../manifests/load.ts";
import type { Lab, ProbeOptions } from "./lab.ts";
import { type LocalApiServer, startLocalApiServer } from "./local-apiserver.ts";
import { newRunId } from "./netns-plan.ts";
import { waitLabReady } from "./readiness.ts";
import { type LabTopology, topologyFromObjects } from "./topology.ts";
import {
  type ControlRequest,
  type ControlResponse,
  statePaths,
  type UpState,
  writeState,
} from "./up-state.ts";

export interface SupervisorOptions {
  stateDir: string;
  files: string[];
  extraPorts?: ProbePort[];
  readyTimeoutMs?: number;
  // The agents' --allow-localhost (their default when not given).
  allowLocalhost?: "always" | "policy";
}

function log(line: string): void {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}

// The operator runs on the host (the API server listens on the host's loopback), in its own process
// group, logging to the state directory.
function startOperator(kubeconfig: string, logPath: string): Child {
  return spawnLogged(
    "operator",
    [
      NODE,
      ...NODE_FLAGS,
      SLUICE_MAIN,
      "operator",
      "--kubeconfig",
      kubeconfig,
      "--lease-namespace",
      "default",
      // Loopback and a free port (operator.log names it): the lab must not need :9963 to be free.
      "--metrics-addr",
      "127.0.0.1:0",
    ],
    logPath,
  );
}

export async function runSupervisor(o: SupervisorOptions): Promise<number> {
  const t0 = performance.now();
  const paths = statePaths(o.stateDir);
  const objects = loadObjects(o.files);
  const topology: LabTopology = topologyFromObjects(objects);
  const state: UpState = {
    phase: "starting",
    pid: process.pid,
    runId: newRunId(),
    files: o.files,
    kubeconfig: paths.kubeconfig,
    nodes: topology.nodes,
    pods: topology.pods.map((p) => p.key),
  };
  writeState(o.stateDir, state);
  // A daemon logs what nothing handled instead of dying with the lab half up.
  process.on("uncaughtException", (err) => log(`unexpected error: ${err.stack ?? err.message}`));

  let api: LocalApiServer | undefined;
  let operator: Child | undefined;
  let lab: Lab | undefined;
  let control: Server | undefined;
  let stopping: Promise<string[]> | undefined;
  // Everything but the state directory; the errors of each step, not the first only.
  const teardown = (): Promise<string[]> => {
    stopping ??= (async () => {
      const errors: string[] = [];
      control?.close();
      try {
        await lab?.destroy();
      } catch (err) {
        errors.push((err as Error).message);
      }
      if (operator) await stopChild(operator, 10_000);
      try {
        await api?.stop();
      } catch (err) {
        errors.push(`API server: ${(err as Error).message}`);
      }
      log(`stopped${errors.length ? ` with errors: ${errors.join("; ")}` : ""}`);
      return errors;
    })();
    return stopping;
  };
  // SIGTERM/SIGINT/SIGHUP: stop everything and remove the state, as `lab down` does.
  registerCleanup(async () => {
    await teardown();
    rmSync(o.stateDir, { recursive: true, force: true });
  });

  try {
    log(
      `lab ${state.runId}: ${topology.nodes.length} nodes, ${topology.pods.length} pods from ${o.files.join(" ")}`,
    );
    api = await startLocalApiServer({ dir: paths.apiserverDir, kubeconfigPath: paths.kubeconfig });
    Object.assign(state, { server: api.server, apiserverPid: api.pid });
    writeState(o.stateDir, state);
    log(`API server ${api.server} (pid ${api.pid}) ready in ${api.startupMs} ms`);
    const kubectlOpts = { cacheDir: paths.kubectlCache };
    lab = await createLabCluster(
      api,
      objects,
      {
        extraPorts: o.extraPorts,
        log,
        runId: state.runId,
        agentLogDir: o.stateDir,
        allowLocalhost: o.allowLocalhost,
      },
      kubectlOpts,
    );
    log("topology registered");
    operator = startOperator(api.kubeconfigPath, paths.operatorLog);
    state.operatorPid = operator.proc.pid;
    writeState(o.stateDir, state);
    const kubeconfig = api.kubeconfigPath;
    const l = lab;
    await Promise.all(topology.nodes.map((n) => l.startKubeAgent(n, kubeconfig)));
    state.monitors = Object.fromEntries(
      topology.nodes.flatMap((n) => {
        const a = l.agentMonitorAddress(n);
        return a ? [[n, a]] : [];
      }),
    );
    await waitLabReady(makeClients(loadKubeConfig(kubeconfig)), topology, o.readyTimeoutMs ?? 120_000);
    control = await listen(paths.socket, (req) => handle(req));
  } catch (err) {
    const message = (err as Error).message;
    log(`start failed: ${message}`);
    await teardown();
    writeState(o.stateDir, { ...state, phase: "failed", error: message });
    return 1;
  }
  state.phase = "ready";
  state.readyMs = Math.round(performance.now() - t0);
  writeState(o.stateDir, state);
  log(`ready in ${state.readyMs} ms`);

  let probing: Promise<unknown> = Promise.resolve();
  async function handle(req: ControlRequest): Promise<ControlResponse> {
    if (stopping) return { ok: false, error: "the lab is stopping" };
    const running = lab;
    if (!running) return { ok: false, error: "the lab is not up" };
    switch (req.op) {
      case "status":
        return { ok: true, state: { ...state, agents: running.runningAgents() } };
      case "probe": {
        const options: ProbeOptions = {
          ports: typeof req.ports === "string" ? parsePorts(req.ports) : undefined,
          family: req.ipv6 === true ? 6 : undefined,
        };
        const next = probing.then(() => running.probe(options));
        probing = next.catch(() => {});
        return { ok: true, report: await next };
      }
      case "down": {
        log("lab down requested");
        writeState(o.stateDir, { ...state, phase: "stopping" });
        const errors = await teardown();
        rmSync(o.stateDir, { recursive: true, force: true });
        setTimeout(() => process.exit(errors.length ? 1 : 0), 100);
        return { ok: true, errors };
      }
      default:
        return { ok: false, error: `unknown request ${JSON.stringify((req as { op?: unknown }).op)}` };
    }
  }
  return new Promise<number>(() => {
    // Runs until `lab down` or a signal ends the process.
  });
}

// A unix socket taking one JSON request per line and answering each with one JSON line.
function listen(path: string, handle: (req: ControlRequest) => Promise<ControlResponse>): Promise<Server> {
  rmSync(path, { force: true });
  const server = createServer((sock: Socket) => {
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("error", () => {});
    sock.on("data", (d: string) => {
      buf += d;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let req: ControlRequest;
        try {
          req = JSON.parse(line) as ControlRequest;
        } catch {
          sock.write(`${JSON.stringify({ ok: false, error: "request is not JSON" })}\n`);
          continue;
        }
        handle(req).then(
          (res) => sock.write(`${JSON.stringify(res)}\n`),
          (err: unknown) =>
            sock.write(
              `${JSON.stringify({ ok: false, error: err instanceof Error ? err.message : String(err) })}\n`,
            ),
        );
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve(server));
  });
}
