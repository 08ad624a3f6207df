// A real one-node Kubernetes cluster for the end-to-end suite (test/cluster): the test API server
// (kube-apiserver + etcd), kube-controller-manager, kube-scheduler and kubelet of the same release
// (scripts/cluster-build.sh), containerd 2.4 with Debian's runc, and Debian's CNI plugins, with
// Sluice's images imported from the archives `npm run image` builds. Everything of a run lives in one
// network namespace (the node: its sysctls, routes, veths and the API server), one work directory
// (mounts included), one bpffs instance and one cgroup parent, all named after the run and removed by
// stop() — or by the next run, when a run was killed (removeLeftovers).
//
// The host's own kernel settings are never changed: kubelet writes the tunables it insists on
// (kernel.panic, vm.overcommit_memory, …) into files bind-mounted over them in a mount namespace of its
// own; its root directory is a shared mount, so the volumes it mounts there reach containerd.
//
// With SLUICE_USE_KUBECONFIG=1 and KUBECONFIG set, the cluster KUBECONFIG names is used instead and
// nothing is started (its nodes must have the images: load build/image/*.oci.tar into them, and chain
// sluice-cni in their CNI conflist); SLUICE_CLUSTER_SET="k=v,..." gives the chart the values that
// cluster needs.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Child, fileTail, spawnLogged, stopChild } from "../../../operator/src/lab/children.ts";
import { run } from "../../../operator/src/lab/exec.ts";
import { signalAll } from "../../../operator/src/lab/stale.ts";
import {
  builtPath,
  type LocalApiServer,
  REPO_ROOT,
  startLocalApiServer,
} from "../../../operator/src/lab/local-apiserver.ts";
import {
  type CniShape,
  cniConflist,
  containerdConfig,
  kubeletConfig,
  type NodePaths,
} from "./node-config.ts";

export type { CniShape } from "./node-config.ts";

const KUBECTL = join(REPO_ROOT, ".tooling/bin/kubectl");
const HELM = join(REPO_ROOT, ".tooling/bin/helm");
const SLUICE_BIN = join(REPO_ROOT, "bin/sluice");
const RUN_PREFIX = "sluice-cl-";
const API_PORT = 6443;
const PAUSE_IMAGE = "localhost/sluice/pause:1";
// The tunables kubelet sets at start (pkg/kubelet/cm: setupKernelTunables), under /proc/sys.
const KUBELET_TUNABLES = [
  "vm/overcommit_memory",
  "vm/panic_on_oom",
  "kernel/panic",
  "kernel/panic_on_oops",
  "kernel/keys/root_maxkeys",
  "kernel/keys/root_maxbytes",
];

export interface ImageRef {
  image: string;
  archive: string;
  digest: string;
}

export interface Cluster {
  /** True when KUBECONFIG's cluster is used instead of one started here. */
  external: boolean;
  shape: CniShape | "external";
  nodeName: string;
  /** The node's address, where pods and hostNetwork agents reach the API server. */
  nodeIp: string;
  apiPort: number;
  /** Host paths for the chart (bpffs instance, CNI binary and socket directories). */
  chartValues: Record<string, string>;
  kubectl(args: readonly string[], input?: string): Promise<string>;
  helm(args: readonly string[]): Promise<string>;
  /** The `sluice` CLI against the cluster (its kubeconfig), on the node. */
  sluice(args: readonly string[]): Promise<string>;
  /** Runs a command in the node's network namespace (the host's, for an external cluster). */
  onNode(argv: readonly string[]): Promise<string>;
  /** Imports an OCI archive into the node's containerd. */
  importImage(archive: string): Promise<void>;
  /** Log tails of the node's processes, for failure messages. */
  logs(): string;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  shape: CniShape;
  /** OCI archives to import (default: the images of build/image/images.json). */
  images?: readonly string[];
  /**
   * Chain Sluice's CNI plugin after the shape's (default true). false for a chart installed with
   * cni.install=false, whose agent serves no plugin: pods then start without waiting for it.
   */
  chainSluice?: boolean;
}

let imagesBuilt: Promise<ImageRef[]> | undefined;

/** The images `npm run image` builds (scripts/image-build.sh: cached, so fast once built). */
export function builtImages(): Promise<ImageRef[]> {
  imagesBuilt ??= run("bash", [join(REPO_ROOT, "scripts/image-build.sh")]).then((r) =>
    r.stdout
      .split("\n")
      .filter((l) => l.trim().startsWith("{"))
      .map((l) => JSON.parse(l) as ImageRef),
  );
  return imagesBuilt;
}

function externalCluster(): Cluster | undefined {
  const kubeconfig = process.env.KUBECONFIG;
  if (process.env.SLUICE_USE_KUBECONFIG !== "1" || !kubeconfig) return undefined;
  const direct = (cmd: string) => (args: readonly string[], input?: string) =>
    run(cmd, [...args], input).then((r) => r.stdout);
  return {
    external: true,
    shape: "external",
    nodeName: "",
    nodeIp: "",
    apiPort: 0,
    // The chart's values for that cluster (its host paths, its API server address, ...), as
    // SLUICE_CLUSTER_SET="key=value,key=value".
    chartValues: Object.fromEntries(
      (process.env.SLUICE_CLUSTER_SET ?? "")
        .split(",")
        .filter((kv) => kv.includes("="))
        .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
    ),
    kubectl: direct(KUBECTL),
    helm: direct(HELM),
    sluice: direct(SLUICE_BIN),
    onNode: (argv) => run(argv[0], argv.slice(1)).then((r) => r.stdout),
    importImage: async () => {},
    logs: () => "",
    stop: async () => {},
  };
}

interface RunState {
  pid: number;
  netns: string;
  cgroupRoot: string;
}

export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const external = externalCluster();
  if (external) return external;
  removeLeftovers();
  const [kubeDir, images] = await Promise.all([builtPath("cluster-build.sh"), builtImages()]);
  const archives = opts.images ?? images.map((i) => i.archive);

  const id = Math.random().toString(36).slice(2, 7);
  const name = `${RUN_PREFIX}${id}`;
  const dir = join(tmpdir(), name);
  const nodeIp = "172.30.0.10";
  const nodeName = `node-${id}`;
  const paths: NodePaths = {
    dir,
    containerdSocket: join(dir, "containerd.sock"),
    cniBinDirs: ["/usr/lib/cni", join(dir, "cni-bin")],
    cniConfDir: join(dir, "cni-conf"),
    cniSocket: join(dir, "sluice-run/cni.sock"),
    kubeletRoot: join(dir, "kubelet"),
    cgroupRoot: `/${name}`,
  };
  for (const d of [
    dir,
    paths.cniConfDir,
    paths.cniBinDirs[1],
    paths.kubeletRoot,
    join(dir, "bpffs"),
    join(dir, "sluice-run"),
  ])
    mkdirSync(d, { recursive: true });
  const state: RunState = { pid: process.pid, netns: name, cgroupRoot: paths.cgroupRoot };
  writeFileSync(join(dir, "run.json"), JSON.stringify(state));

  const children: Child[] = [];
  let api: LocalApiServer | undefined;
  const spawnNode = (label: string, argv: readonly string[]): Child => {
    const c = spawnLogged(
      label,
      ["nsenter", `--net=/run/netns/${name}`, "--", ...argv],
      join(dir, `${label}.log`),
    );
    children.push(c);
    return c;
  };
  const logs = () =>
    ["apiserver", "controller-manager", "scheduler", "containerd", "kubelet"]
      .map((l) => `--- ${l} ---\n${fileTail(join(dir, `${l}.log`), 15)}`)
      .join("\n");

  // A test process that dies (a timeout, an uncaught error, the runner's forced exit) takes its
  // cluster with it: the hook stays until the teardown is done.
  const onExit = () => teardown(dir, state);
  process.once("exit", onExit);
  const stop = async () => {
    // Controllers first (nothing recreates pods), then kubelet; the teardown kills the rest at once
    // (pods by their cgroup; the API server, the runtime and its shims by the node's namespace): a
    // graceful stop of what the teardown removes anyway only costs time.
    for (const c of children.slice(1)) await stopChild(c, 1000);
    teardown(dir, state);
    process.off("exit", onExit);
    await api?.stop();
  };

  try {
    await run("ip", ["netns", "add", name]);
    await run(
      "ip",
      ["-n", name, "-batch", "-"],
      [
        "link set lo up",
        // The node's "uplink": a veth whose peer stays in the namespace (this kernel has no dummy links).
        "link add eth0 type veth peer name eth0-peer",
        "link set eth0-peer up",
        `addr add ${nodeIp}/24 dev eth0`,
        "link set eth0 up",
        "route add default dev eth0",
      ].join("\n"),
    );
    // A bpffs instance of the run's own, shared so that the agent's HostToContainer mount is allowed.
    await run("mount", ["-t", "bpf", "bpf", join(dir, "bpffs")]);
    await run("mount", ["--make-shared", join(dir, "bpffs")]);
    await run("mount", ["--bind", paths.kubeletRoot, paths.kubeletRoot]);
    await run("mount", ["--make-shared", paths.kubeletRoot]);

    api = await startLocalApiServer({
      dir: join(dir, "apiserver"),
      netns: name,
      nodeAddress: nodeIp,
      port: API_PORT,
      authorizationMode: "RBAC",
    });
    const kubeconfig = api.kubeconfigPath;
    const pki = join(dir, "apiserver");
    const kube = join(kubeDir, "sluice-kube");
    const shared = ["--kubeconfig", kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1", "--v=1"];
    spawnNode("containerd", [
      join(kubeDir, "containerd"),
      "--config",
      writeFile(dir, "containerd.toml", containerdConfig(paths, PAUSE_IMAGE)),
    ]);
    spawnNode("controller-manager", [
      kube,
      "controller-manager",
      ...shared,
      "--secure-port=0",
      `--service-account-private-key-file=${join(pki, "sa.key")}`,
      `--root-ca-file=${join(pki, "ca.crt")}`,
      "--use-service-account-credentials=false",
    ]);
    spawnNode("scheduler", [kube, "scheduler", ...shared, "--secure-port=0"]);
    await waitFor("containerd socket", () => existsSync(paths.containerdSocket), 30_000, logs);

    const ctr = [join(kubeDir, "ctr"), "--address", paths.containerdSocket, "-n", "k8s.io"];
    const importImage = async (archive: string) => {
      await run("nsenter", [
        `--net=/run/netns/${name}`,
        "--",
        ...ctr,
        "images",
        "import",
        "--no-unpack=false",
        archive,
      ]).catch(async () =>
        run("nsenter", [`--net=/run/netns/${name}`, "--", ...ctr, "images", "import", archive]),
      );
    };
    for (const a of archives) await importImage(a);

    writeFile(
      paths.cniConfDir,
      `10-sluice-${opts.shape}.conflist`,
      cniConflist(opts.shape, "10.244.0.0/24", "10.244.0.1", `slbr${id}`, paths, opts.chainSluice ?? true),
    );

    createCgroupRoot(paths.cgroupRoot);
    // kubelet in a mount namespace of its own where the tunables it writes are plain files.
    const binds: string[] = [];
    for (const t of KUBELET_TUNABLES) {
      const f = join(dir, "sysctl", t.replaceAll("/", "."));
      mkdirSync(join(dir, "sysctl"), { recursive: true });
      writeFileSync(f, readFileSync(`/proc/sys/${t}`));
      binds.push(`mount --bind ${f} /proc/sys/${t}`);
    }
    const kubeletArgs = [
      kube,
      "kubelet",
      `--config=${writeFile(dir, "kubelet.yaml", kubeletConfig({ nodeIp, caFile: join(pki, "ca.crt"), paths }))}`,
      `--kubeconfig=${kubeconfig}`,
      `--root-dir=${paths.kubeletRoot}`,
      `--cert-dir=${join(dir, "kubelet-pki")}`,
      `--hostname-override=${nodeName}`,
      `--node-ip=${nodeIp}`,
      "--v=1",
    ];
    spawnNode("kubelet", [
      "unshare",
      "--mount",
      "--propagation",
      "unchanged",
      "--",
      "bash",
      "-c",
      `set -e; ${binds.join("; ")}; exec "$@"`,
      "kubelet",
      ...kubeletArgs,
    ]);

    const inNode = (argv: readonly string[], input?: string) =>
      run("nsenter", [`--net=/run/netns/${name}`, "--", ...argv], input).then((r) => r.stdout);
    const kubectl = (args: readonly string[], input?: string) =>
      inNode([KUBECTL, "--kubeconfig", kubeconfig, ...args], input);
    await waitFor(
      `node ${nodeName} Ready`,
      async () => {
        const out = await kubectl([
          "get",
          "node",
          nodeName,
          "-o",
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        ]).catch(() => "");
        return out === "True";
      },
      90_000,
      logs,
    );
    await waitFor(
      "default service account",
      async () => (await kubectl(["get", "serviceaccount", "default", "-o", "name"]).catch(() => "")) !== "",
      30_000,
      logs,
    );
    return {
      external: false,
      shape: opts.shape,
      nodeName,
      nodeIp,
      apiPort: API_PORT,
      chartValues: {
        k8sServiceHost: nodeIp,
        k8sServicePort: String(API_PORT),
        "agent.bpffs.hostPath": join(dir, "bpffs"),
        "agent.bpffsRoot": `/sys/fs/bpf/${name}`,
        "cni.binDir": paths.cniBinDirs[1],
        "cni.socketDir": join(dir, "sluice-run"),
        "image.pullPolicy": "Never",
      },
      kubectl,
      helm: (args) => inNode([HELM, "--kubeconfig", kubeconfig, ...args]),
      sluice: (args) => inNode([SLUICE_BIN, ...args, "--kubeconfig", kubeconfig]),
      onNode: (argv) => inNode(argv),
      importImage,
      logs,
      stop,
    };
  } catch (err) {
    await stop().catch(() => {});
    throw new Error(`${(err as Error).message}\n${logs()}`);
  }
}

function writeFile(dir: string, file: string, text: string): string {
  const p = join(dir, file);
  writeFileSync(p, text);
  return p;
}

async function waitFor(
  what: string,
  ok: () => boolean | Promise<boolean>,
  timeoutMs: number,
  logs: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s\n${logs()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

// ---- teardown: synchronous, so that it also runs from an exit handler ---------------------------

function sh(cmd: string, args: readonly string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return "";
  }
}

function cgroupDirs(cgroupRoot: string): string[] {
  const base = "/sys/fs/cgroup";
  const out: string[] = [];
  for (const h of readdirSync(base)) {
    const d = join(base, h, cgroupRoot);
    if (existsSync(d)) out.push(d);
  }
  return out;
}

/** kubelet needs its cgroup root in every v1 hierarchy; a cpuset child starts with no CPUs or nodes. */
function createCgroupRoot(cgroupRoot: string): void {
  const base = "/sys/fs/cgroup";
  for (const h of readdirSync(base)) {
    if (h === "unified" || !existsSync(join(base, h, "cgroup.procs"))) continue;
    const d = join(base, h, cgroupRoot);
    mkdirSync(d, { recursive: true });
    for (const f of ["cpuset.cpus", "cpuset.mems"])
      if (existsSync(join(d, f))) writeFileSync(join(d, f), readFileSync(join(base, h, f)));
  }
}

function walkDirs(d: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(d, { withFileTypes: true }))
    if (e.isDirectory()) out.push(...walkDirs(join(d, e.name)));
  out.push(d);
  return out;
}

/** Removes everything a run created: its processes, mounts, cgroups, namespace and directory. */
function teardown(dir: string, state: RunState): void {
  for (let round = 0; round < 20; round++) {
    const pids = new Set<string>();
    for (const d of cgroupDirs(state.cgroupRoot))
      for (const sub of walkDirs(d))
        for (const p of readFileSync(join(sub, "cgroup.procs"), "utf8").split("\n")) if (p) pids.add(p);
    for (const p of sh("ip", ["netns", "pids", state.netns]).split("\n")) if (p.trim()) pids.add(p.trim());
    // Shims run in the node's namespace; runc's children (pods) in the run's cgroups.
    pids.delete(String(process.pid));
    if (pids.size === 0) break;
    signalAll(
      [...pids].map(Number).filter((n) => n > 1),
      "SIGKILL",
    );
    execFileSync("sleep", ["0.2"]);
  }
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) sh("umount", ["-l", m]);
  for (const d of cgroupDirs(state.cgroupRoot))
    for (const sub of walkDirs(d)) {
      try {
        rmdirSync(sub);
      } catch {
        // still busy: the next run's removeLeftovers tries again
      }
    }
  sh("ip", ["netns", "del", state.netns]);
  rmSync(dir, { recursive: true, force: true });
}

/** Removes what runs whose owner process is gone left behind (a run killed with -9). */
export function removeLeftovers(): void {
  for (const e of readdirSync(tmpdir())) {
    if (!e.startsWith(RUN_PREFIX)) continue;
    const dir = join(tmpdir(), e);
    let state: RunState;
    try {
      state = JSON.parse(readFileSync(join(dir, "run.json"), "utf8")) as RunState;
    } catch {
      state = { pid: 0, netns: e, cgroupRoot: `/${e}` };
    }
    if (state.pid && state.pid !== process.pid && existsSync(`/proc/${state.pid}`)) continue;
    teardown(dir, state);
  }
}
