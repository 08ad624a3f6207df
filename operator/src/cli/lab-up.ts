// The lab that stays: `sluice lab up` starts a detached supervisor (`lab serve`) that owns a local API
// server, the operator and one Kubernetes-mode agent per node; probe, status and down talk to it over
// its control socket, and down cleans up by itself when the supervisor is gone.
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { parsePorts } from "../api/matrix-rows.ts";
import { fileTail, NODE, NODE_FLAGS, SLUICE_MAIN } from "../lab/children.ts";
import { loadObjects } from "../manifests/load.ts";
import { pidAlive, waitGone } from "../lab/stale.ts";
import { topologyFromObjects } from "../lab/topology.ts";
import { recordedProcesses, removeLeftovers } from "../lab/up-leftovers.ts";
import { control, readState, stateDir, statePaths, type UpState } from "../lab/up-state.ts";
import { parseDuration } from "./duration.ts";
import {
  allowLocalhostOption,
  inputFiles,
  labUsage,
  needRoot,
  printReport,
  probeOptions,
} from "./lab-args.ts";
import { outputFormat, outputOption, plural, writeOutput } from "./output.ts";
import { flagValue, parseCommandArgs, UsageError } from "./usage.ts";

function logTail(path: string): string {
  return fileTail(path, 30) || "(no log)";
}

function describeRunning(dir: string, state: UpState | undefined): string {
  return state && pidAlive(state.pid)
    ? `a lab is already up (supervisor pid ${state.pid}, state ${dir}): use it, or run \`sluice lab down\` first`
    : `${dir} holds a lab whose supervisor is gone: run \`sluice lab down\` to remove its leftovers first`;
}

export async function labUp(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: [...argv],
      options: {
        file: { type: "string", short: "f", multiple: true },
        ports: { type: "string" },
        timeout: { type: "string", default: "10m" },
        "allow-localhost": { type: "string" },
      },
      strict: true,
    },
    labUsage.up,
  );
  const allowLocalhost = allowLocalhostOption(values["allow-localhost"]);
  const timeoutMs = parseDuration(values.timeout, "--timeout");
  if (values.ports) flagValue(() => parsePorts(values.ports ?? ""));
  const files = inputFiles(values.file);
  needRoot();
  // Bad manifests fail here, with the loader's message, before anything starts.
  const topology = topologyFromObjects(loadObjects(files));
  const dir = stateDir();
  const paths = statePaths(dir);
  mkdirSync(dirname(dir), { recursive: true });
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST")
      throw new Error(describeRunning(dir, readState(dir)));
    throw err;
  }
  const t0 = performance.now();
  const fd = openSync(paths.log, "a");
  const args = [
    ...NODE_FLAGS,
    SLUICE_MAIN,
    "lab",
    "serve",
    "--state",
    dir,
    ...files.flatMap((f) => ["-f", f]),
  ];
  if (values.ports) args.push("--ports", values.ports);
  if (allowLocalhost) args.push("--allow-localhost", allowLocalhost);
  const supervisor = spawn(NODE, args, { stdio: ["ignore", fd, fd], detached: true });
  closeSync(fd);
  supervisor.unref();
  process.stderr.write(
    `starting lab: ${plural(topology.nodes.length, "node")}, ${plural(topology.pods.length, "pod")} (log: ${paths.log})\n`,
  );

  const fail = async (why: string, log = logTail(paths.log)): Promise<number> => {
    process.stderr.write(`sluice lab up: ${why}\n--- ${paths.log} (tail) ---\n${log}\n`);
    const r = await removeLeftovers(dir, readState(dir));
    for (const e of r.errors) process.stderr.write(`error: ${e}\n`);
    return 1;
  };
  // Ctrl-C while starting: the supervisor stops what it started and removes its state.
  let interrupted = false;
  const onInterrupt = () => {
    interrupted = true;
  };
  process.once("SIGINT", onInterrupt);
  process.once("SIGTERM", onInterrupt);
  for (;;) {
    const state = readState(dir);
    if (interrupted && state?.phase !== "ready") {
      process.stderr.write("sluice lab up: interrupted; stopping the lab\n");
      if (supervisor.pid && pidAlive(supervisor.pid)) process.kill(supervisor.pid, "SIGTERM");
      if (supervisor.pid) await waitGone([supervisor.pid], 60_000);
      await removeLeftovers(dir, readState(dir));
      return 130;
    }
    if (state?.phase === "ready") {
      process.stdout.write(`export KUBECONFIG=${state.kubeconfig}\n`);
      process.stderr.write(
        `lab ${state.runId} up in ${((performance.now() - t0) / 1000).toFixed(1)} s: API server ${state.server}, operator, ${plural(state.nodes.length, "agent")} (${state.nodes.join(", ")}), ${plural(state.pods.length, "pod")}\n` +
          "kubectl apply policies with that KUBECONFIG; `sluice lab probe` measures, `sluice lab down` removes it\n",
      );
      return 0;
    }
    if (state?.phase === "failed") {
      await waitGone([state.pid], 30_000);
      return fail(state.error ?? "the lab failed to start");
    }
    if (supervisor.exitCode !== null || supervisor.signalCode !== null || (state && !pidAlive(state.pid)))
      return fail(
        `the lab supervisor exited before it was ready (${supervisor.signalCode ?? `code ${supervisor.exitCode}`})`,
      );
    if (performance.now() - t0 > timeoutMs) {
      // The supervisor removes its state directory (log included) when it stops on a signal.
      const log = logTail(paths.log);
      if (supervisor.pid) process.kill(supervisor.pid, "SIGTERM");
      if (supervisor.pid) await waitGone([supervisor.pid], 60_000);
      return fail(`not ready after ${values.timeout} (--timeout)`, log);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function labServe(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs({
    args: [...argv],
    options: {
      state: { type: "string" },
      file: { type: "string", short: "f", multiple: true },
      ports: { type: "string" },
      "allow-localhost": { type: "string" },
    },
    strict: true,
  });
  if (!values.state || !values.file?.length) throw new UsageError("--state and -f are required");
  const { runSupervisor } = await import("../lab/supervisor.ts");
  const code = await runSupervisor({
    stateDir: values.state,
    files: values.file,
    extraPorts: values.ports ? parsePorts(values.ports) : undefined,
    allowLocalhost: allowLocalhostOption(values["allow-localhost"]),
  });
  process.exit(code);
}

// The state of the lab that is up, or an error saying there is none / it is not usable.
function upState(): { dir: string; state: UpState } {
  const dir = stateDir();
  const state = readState(dir);
  if (!existsSync(dir) || !state)
    throw new Error(`no lab is up (${dir}): start one with \`sluice lab up -f ...\``);
  if (!pidAlive(state.pid))
    throw new Error(
      `the lab's supervisor (pid ${state.pid}) is gone: \`sluice lab down\` removes its leftovers`,
    );
  if (state.phase !== "ready")
    throw new Error(`the lab is ${state.phase}, not ready (log: ${statePaths(dir).log})`);
  return { dir, state };
}

export async function labProbe(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs(
    { args: [...argv], options: probeOptions, strict: true },
    labUsage.probe,
  );
  const output = outputFormat(values.output);
  if (values.ports) flagValue(() => parsePorts(values.ports ?? ""));
  const { dir } = upState();
  const res = await control(dir, { op: "probe", ports: values.ports, ipv6: values.ipv6 });
  if (!res.ok) throw new Error(res.error);
  if (!("report" in res)) throw new Error("the lab supervisor answered without a report");
  printReport(res.report, output, (line) => {
    if (values.verbose || output === "table") process.stderr.write(`${line}\n`);
  });
  return 0;
}

export async function labStatus(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs(
    { args: [...argv], options: outputOption, strict: true },
    labUsage.status,
  );
  const output = outputFormat(values.output);
  const { dir } = upState();
  const res = await control(dir, { op: "status" });
  if (!res.ok) throw new Error(res.error);
  if (!("state" in res)) throw new Error("the lab supervisor answered without a state");
  const s = res.state;
  writeOutput(output, s, () =>
    [
      `lab ${s.runId}: ${s.phase} (supervisor pid ${s.pid}, state ${dir})`,
      `KUBECONFIG=${s.kubeconfig}`,
      `API server ${s.server} (pid ${s.apiserverPid}), operator pid ${s.operatorPid}`,
      `agents running: ${(s.agents ?? []).join(", ") || "none"} of ${s.nodes.join(", ")}`,
      `${plural(s.pods.length, "pod")}; files: ${s.files.join(" ")}`,
      `logs: ${dir}/*.log`,
    ].join("\n"),
  );
  return 0;
}

export async function labDown(argv: readonly string[]): Promise<number> {
  parseCommandArgs({ args: [...argv], options: {}, strict: true }, labUsage.down);
  needRoot();
  const dir = stateDir();
  if (!existsSync(dir)) {
    process.stderr.write(`no lab is up (${dir})\n`);
    return 0;
  }
  const state = readState(dir);
  const t0 = performance.now();
  const errors: string[] = [];
  if (state && recordedProcesses(state).some((p) => p.what === "supervisor")) {
    try {
      const res = await control(dir, { op: "down" });
      if (!res.ok) errors.push(res.error);
      else if ("errors" in res) errors.push(...res.errors);
    } catch (err) {
      // Still starting (its control socket comes with readiness) or stuck: its cleanup runs on SIGTERM.
      process.stderr.write(
        `the supervisor did not take the request (${(err as Error).message}); stopping it\n`,
      );
      if (pidAlive(state.pid)) process.kill(state.pid, "SIGTERM");
    }
    if (!(await waitGone([state.pid], 60_000)))
      process.stderr.write("the supervisor did not exit; killing it\n");
  }
  // Whatever is left: everything when the supervisor was gone, nothing after a clean stop.
  const r = await removeLeftovers(dir, state);
  errors.push(...r.errors);
  if (r.killed.length > 0 || r.netns > 0)
    process.stderr.write(
      `removed leftovers: ${[...r.killed, plural(r.netns, "namespace")].join(", ")}${existsSync(dir) ? "" : `, ${dir}`}\n`,
    );
  for (const e of errors) process.stderr.write(`error: ${e}\n`);
  if (errors.length > 0) return 1;
  process.stderr.write(
    `lab ${state?.runId ?? ""} down in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
  );
  return 0;
}
