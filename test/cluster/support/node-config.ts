// The configuration files of the test cluster's node (test/cluster): containerd's, kubelet's and the
// CNI network's, as text from a few facts about the run. Pure functions: cluster.ts writes them.
export type CniShape = "ptp" | "bridge";

export interface NodePaths {
  /** The run's work directory; everything the node writes lives below it. */
  dir: string;
  containerdSocket: string;
  /** CNI binaries: Debian's plugins, and the directory the chart's agent installs sluice-cni into. */
  cniBinDirs: string[];
  cniConfDir: string;
  /** Where the agent serves the chained plugin (the chart's cni.socketDir on the host). */
  cniSocket: string;
  kubeletRoot: string;
  /** cgroup parent of every pod: per run, so nothing lands in the host's /kubepods. */
  cgroupRoot: string;
}

export function containerdConfig(p: NodePaths, pauseImage: string): string {
  return `version = 3
root = "${p.dir}/containerd/root"
state = "${p.dir}/containerd/state"

[grpc]
  address = "${p.containerdSocket}"

[ttrpc]
  address = "${p.containerdSocket}.ttrpc"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "${pauseImage}"

[plugins."io.containerd.cri.v1.runtime"]
  # Without CAP_SYS_RESOURCE (not in this machine's bounding set) runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  # Pod network namespaces are bind-mounted below the state dir, not in the host's /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [${p.cniBinDirs.map((d) => `"${d}"`).join(", ")}]
    conf_dir = "${p.cniConfDir}"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "${p.dir}/runc"
        SystemdCgroup = false
`;
}

/**
 * The node's CNI network: Debian's ptp (one veth per pod with a host route, as Calico does) or bridge
 * (pods on one bridge, as Flannel does), host-local IPAM, then Sluice's chained plugin, which returns
 * only once the agent enforces the new pod. No portmap and no masquerade: nothing touches iptables.
 * chainSluice false leaves the plugin out (a chart installed with cni.install=false: no agent answers
 * it, and a chained plugin that finds no agent fails the pod closed).
 */
export function cniConflist(
  shape: CniShape,
  podCidr: string,
  gateway: string,
  bridge: string,
  p: NodePaths,
  chainSluice = true,
): string {
  const ipam = {
    type: "host-local",
    ranges: [[{ subnet: podCidr, gateway }]],
    dataDir: `${p.dir}/cni-ipam`,
  };
  const first =
    shape === "ptp"
      ? { type: "ptp", ipMasq: false, ipam: { ...ipam, routes: [{ dst: "0.0.0.0/0" }] } }
      : {
          type: "bridge",
          bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: false,
          ipam: { ...ipam, routes: [{ dst: "0.0.0.0/0" }] },
        };
  return `${JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: `sluice-test-${shape}`,
      plugins: chainSluice
        ? [first, { type: "sluice-cni", socket: p.cniSocket, timeoutSeconds: 60 }]
        : [first],
    },
    null,
    2,
  )}\n`;
}

export interface KubeletFacts {
  nodeIp: string;
  caFile: string;
  /** Bind mounts of regular files over the kernel tunables kubelet writes (see cluster.ts). */
  paths: NodePaths;
}

export function kubeletConfig(f: KubeletFacts): string {
  const p = f.paths;
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${f.nodeIp}
port: 10250
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: false }
  x509: { clientCAFile: ${f.caFile} }
authorization: { mode: AlwaysAllow }
containerRuntimeEndpoint: unix://${p.containerdSocket}
# These machines: cgroup v1 controllers, no systemd as PID 1, swap allowed.
cgroupDriver: cgroupfs
cgroupRoot: ${p.cgroupRoot}
failCgroupV1: false
failSwapOn: false
# kubelet would set kernel.panic and friends on the host; it runs where those files are its own.
protectKernelDefaults: false
# No iptables chains of kubelet's on the host (KUBE-FIREWALL drops non-loopback traffic to 127/8).
makeIPTablesUtilChains: false
resolvConf: ""
clusterDNS: []
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%" }
shutdownGracePeriod: 0s
syncFrequency: 10s
nodeStatusUpdateFrequency: 4s
fileCheckFrequency: 5s
`;
}
