// The container images scripts/image-build.sh writes without a container engine: built twice from the
// same tree (a snapshot of this checkout, through --tree, each build in its own temporary copy) they
// have the same manifest digest; the archives are OCI layouts `ctr images import` names right; the
// sluice image's layers, unpacked into a directory, are a root filesystem its programs run in
// (chroot: Node, the CLI's bundle and nothing else of it, the addon and its libbpf, ip, mount, the
// probe, a static agent enforcing from the bundle on a bpffs); the pause image's binary
// runs and ends on SIGTERM. Root (chroot) and the Debian mirror (first build) are needed.
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { type TestContext, test } from "node:test";
import { fileURLToPath } from "node:url";
import { imageEnv, parseEnv, preloaded } from "../support/image-env.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BUILD = join(ROOT, "scripts/image-build.sh");

interface ImageLine {
  image: string;
  archive: string;
  digest: string;
  size: number;
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

interface ImageConfig {
  created: string;
  config: {
    User: string;
    Env: string[];
    Entrypoint: string[];
    WorkingDir: string;
    Labels: Record<string, string>;
  };
  rootfs: { diff_ids: string[] };
}

// The project's pattern (test/support/privileged.ts) for what this test needs instead of bpffs:
// skipped with a reason locally, a failure under CI=true.
function requireImageBuild(t: TestContext): boolean {
  let problem: string | undefined;
  if (process.getuid?.() !== 0) problem = "needs root (chroot)";
  else if (!existsSync(join(ROOT, ".tooling/node/bin/node"))) problem = "run scripts/setup.sh first";
  else {
    const tools = [
      "apt-get",
      "dpkg-deb",
      "gcc",
      "clang",
      "make",
      "tar",
      "gzip",
      "readelf",
      "strip",
      "chroot",
    ];
    const absent = tools.filter((x) => spawnSync("sh", ["-c", `command -v ${x}`]).status !== 0);
    if (absent.length > 0) problem = `missing ${absent.join(", ")}`;
  }
  if (!problem) return true;
  if (process.env.CI === "true") throw new Error(`cannot run under CI: ${problem}`);
  t.skip(problem);
  return false;
}

function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}) {
  const r = spawnSync(cmd, args, {
    encoding: "utf8",
    maxBuffer: 64 << 20,
    timeout: opts.timeoutMs ?? 60_000,
    input: opts.input,
    env: { ...process.env, PATH: `${join(ROOT, ".tooling/node/bin")}:${process.env.PATH}` },
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function build(snapshot: string, out: string): ImageLine[] {
  const r = run("bash", [BUILD, "--tree", snapshot, "--out", out], { timeoutMs: 15 * 60_000 });
  assert.equal(r.status, 0, `image-build.sh failed:\n${r.stderr}`);
  return r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as ImageLine);
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

// Extracts an OCI archive, checks the layout's invariants and returns what the image is made of.
function openArchive(archive: string, dir: string, ref: string) {
  mkdirSync(dir, { recursive: true });
  assert.equal(run("tar", ["-xf", archive, "-C", dir]).status, 0);
  const blob = (d: string) => readFileSync(join(dir, "blobs/sha256", d.slice("sha256:".length)));
  assert.deepEqual(JSON.parse(readFileSync(join(dir, "oci-layout"), "utf8")), {
    imageLayoutVersion: "1.0.0",
  });
  const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8")) as { manifests: Descriptor[] };
  assert.equal(index.manifests.length, 1);
  const m = index.manifests[0];
  assert.deepEqual(m.annotations, {
    "io.containerd.image.name": ref,
    "org.opencontainers.image.ref.name": ref.slice(ref.lastIndexOf(":") + 1),
  });
  const manifestBytes = blob(m.digest);
  assert.equal(sha256(manifestBytes), m.digest);
  const manifest = JSON.parse(manifestBytes.toString()) as { config: Descriptor; layers: Descriptor[] };
  for (const d of [manifest.config, ...manifest.layers]) {
    const bytes = blob(d.digest);
    assert.equal(sha256(bytes), d.digest, `blob ${d.digest}`);
    assert.equal(bytes.length, d.size, `size of ${d.digest}`);
  }
  const config = JSON.parse(blob(manifest.config.digest).toString()) as ImageConfig;
  assert.equal(config.rootfs.diff_ids.length, manifest.layers.length);
  return {
    digest: m.digest,
    manifest,
    config,
    layerFiles: manifest.layers.map((l) => join(dir, "blobs/sha256", l.digest.slice(7))),
  };
}

function unpack(layerFiles: readonly string[], rootfs: string): void {
  mkdirSync(rootfs, { recursive: true });
  for (const f of layerFiles) assert.equal(run("tar", ["-xzf", f, "-C", rootfs]).status, 0, `unpack ${f}`);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const address = server.address();
  await new Promise<void>((ok) => server.close(() => ok()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

function exited(child: ChildProcess, timeoutMs: number): Promise<number | string | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      return resolve(child.exitCode ?? child.signalCode);
    const timer = setTimeout(() => resolve("timeout"), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal);
    });
  });
}

test("the images are reproducible, self-contained and importable", { timeout: 30 * 60_000 }, async (t) => {
  if (!requireImageBuild(t)) return;
  const tmp = mkdtempSync(join(tmpdir(), "sluice-image-test-"));
  const children: ChildProcess[] = [];
  const mounts: string[] = []; // innermost first
  t.after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    // Never a recursive delete through a mount that is still there (sysfs, proc, the bpffs).
    const stuck = mounts.filter((m) => run("umount", ["-l", m]).status !== 0);
    if (stuck.length === 0) rmSync(tmp, { recursive: true, force: true });
    else t.diagnostic(`left ${tmp}: could not unmount ${stuck.join(", ")}`);
  });

  // A snapshot, so that edits to this checkout during the builds cannot make them differ.
  const snapshot = join(tmp, "tree");
  mkdirSync(snapshot);
  const excludes = ["node_modules", ".tooling", "build", ".git", "bpf/build", ".cache", "test/apiserver/bin"];
  const copy = run("bash", [
    "-c",
    `tar -C "$1" ${excludes.map((e) => `--exclude=./${e}`).join(" ")} -cf - . | tar -C "$2" -xf -`,
    "copy",
    ROOT,
    snapshot,
  ]);
  assert.equal(copy.status, 0, copy.stderr);

  const first = build(snapshot, join(tmp, "out1"));
  const second = build(snapshot, join(tmp, "out2"));
  assert.deepEqual(
    first.map((l) => l.image),
    [`ghcr.io/sluice-dev/sluice:${chartAppVersion()}`, "localhost/sluice/pause:1"],
  );
  assert.deepEqual(
    second.map((l) => l.digest),
    first.map((l) => l.digest),
    "two builds of the same tree differ",
  );
  assert.ok(
    !existsSync(join(snapshot, "node_modules")) && !existsSync(join(snapshot, "bpf/build")),
    "--tree touched the tree",
  );
  const recorded = readFileSync(join(tmp, "out1/images.json"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as ImageLine & { packages?: Array<{ name: string; version: string }> });
  assert.deepEqual(
    recorded.map(({ image, archive, digest, size }) => ({ image, archive, digest, size })),
    first,
  );
  assert.ok(recorded[0].packages?.some((p) => p.name === "libc6" && p.version !== ""));

  // The sluice image: its config, and its layers as a root filesystem.
  const [sluice, pause] = first;
  const img = openArchive(sluice.archive, join(tmp, "oci-sluice"), sluice.image);
  assert.equal(img.digest, sluice.digest);
  assert.equal(img.manifest.layers.length, 3, "Debian, Node and app layers");
  const cfg = img.config.config;
  assert.equal(cfg.User, "0");
  assert.equal(cfg.Labels["org.opencontainers.image.version"], chartAppVersion());
  for (const label of ["revision", "source"]) assert.ok(cfg.Labels[`org.opencontainers.image.${label}`]);
  const path =
    cfg.Env.find((e) => e.startsWith("PATH="))
      ?.slice(5)
      .split(":") ?? [];
  const rootfs = join(tmp, "rootfs");
  unpack(img.layerFiles, rootfs);
  for (const program of ["ip", "mount"])
    assert.ok(
      path.some((d) => existsSync(join(rootfs, d, program))),
      `${program} is not on the image's PATH`,
    );
  assert.match(
    readFileSync(join(rootfs, "opt/sluice/PACKAGES"), "utf8"),
    /^libbpf1 \S+ amd64 [0-9a-f]{64}$/m,
  );
  assert.match(readFileSync(join(rootfs, "etc/passwd"), "utf8"), /^sluice:x:65532:65532:/m);
  // image/env in the config, and what it preloads in the image (the agent below runs with it).
  const env = imageEnv();
  const configEnv = parseEnv(cfg.Env, "the image config's Env");
  for (const [k, v] of Object.entries(env)) assert.equal(configEnv[k], v, `${k} in ${cfg.Env}`);
  const preloads = preloaded(env);
  assert.ok(preloads.length > 0, "image/env preloads the allocator");
  for (const lib of preloads) assert.ok(existsSync(join(rootfs, lib)), `${lib} is in the image`);

  const inImage = (args: readonly string[], timeoutMs = 60_000) =>
    run("chroot", [rootfs, ...args], { timeoutMs });
  const help = inImage([...cfg.Entrypoint, "--help"]);
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /usage: sluice <command>/);
  assert.match(help.stdout, /^ {2}probe /m);
  const ip = inImage([findOnPath(rootfs, path, "ip"), "-V"]);
  assert.equal(ip.status, 0, ip.stderr);
  assert.match(ip.stdout, /iproute2/);
  const mount = inImage([findOnPath(rootfs, path, "mount"), "--version"]);
  assert.equal(mount.status, 0, mount.stderr);
  assert.match(mount.stdout, /util-linux/);
  // The native addon resolves libbpf, libelf and zlib inside the image.
  const addon = inImage([
    cfg.Entrypoint[0],
    "-e",
    'require("/opt/sluice/app/bpf/build/sluice_bpf.node"); console.log("loaded")',
  ]);
  assert.equal(addon.status, 0, addon.stderr);
  assert.match(addon.stdout, /loaded/);

  // What runs is the bundle (scripts/bundle.mjs): the entrypoint and the launcher name it, and there is
  // nothing else to run: no CLI sources, no node_modules (every dependency is inside the bundle).
  assert.equal(cfg.Entrypoint.at(-1), "/opt/sluice/app/dist/main.mjs");
  assert.match(
    readFileSync(join(rootfs, "opt/sluice/bin/sluice"), "utf8"),
    /import\("\/opt\/sluice\/app\/dist\/main\.mjs"\)/,
  );
  for (const absent of [
    "opt/sluice/app/node_modules",
    "opt/sluice/app/operator/src/cli",
    "opt/sluice/app/dist/meta.json",
  ])
    assert.ok(!existsSync(join(rootfs, absent)), `${absent} is in the image`);
  assert.ok(
    existsSync(join(rootfs, "opt/sluice/app/dist/licenses/@kubernetes/client-node/LICENSE")),
    "bundled licences",
  );
  // The files the bundle finds relative to the app root: package.json (version), crds/ (validate).
  const release = inImage(["/opt/sluice/bin/sluice", "--version", "-o", "json"]);
  assert.equal(release.status, 0, release.stderr);
  assert.equal(
    (JSON.parse(release.stdout) as { version: string }).version,
    (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version,
  );
  mkdirSync(join(rootfs, "tmp/manifests"), { recursive: true });
  writeFileSync(
    join(rootfs, "tmp/manifests/bad.yaml"),
    "apiVersion: sluice.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: a, namespace: b}\nspec: {}\n",
  );
  const invalid = inImage([...cfg.Entrypoint, "validate", "/tmp/manifests/bad.yaml"]);
  assert.equal(invalid.status, 1, invalid.stderr);
  assert.match(invalid.stdout, /spec\.endpointSelector: Required value/);

  // The agent from the bundle, in the image: a static agent loads the BPF object through the addon,
  // pins its maps on a bpffs and reports ready; `datapath show` reads them back, `remove` clears them.
  for (const [dir, type] of [
    ["sys", "sysfs"],
    ["proc", "proc"],
    ["tmp/bpffs", "bpf"],
  ] as const) {
    mkdirSync(join(rootfs, dir), { recursive: true });
    assert.equal(run("mount", ["-t", type, type, join(rootfs, dir)]).status, 0, `mount ${type}`);
    mounts.unshift(join(rootfs, dir));
  }
  writeFileSync(
    join(rootfs, "tmp/manifests/ns.yaml"),
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
  );
  const agent = spawn(
    "chroot",
    [
      rootfs,
      ...cfg.Entrypoint,
      "agent",
      "--static",
      "-f",
      "/tmp/manifests/ns.yaml",
      "--node",
      "n1",
      "--bpffs-root",
      "/tmp/bpffs/sluice",
      "--metrics-addr",
      "0",
      "--ready-file",
      "/tmp/ready",
    ],
    { stdio: ["ignore", "ignore", "pipe"], env: configEnv },
  );
  children.push(agent);
  let agentLog = "";
  agent.stderr?.on("data", (d: Buffer) => {
    agentLog += d.toString();
  });
  // The ready file is written inside start(); the "agent ready" line follows it through a pipe,
  // so both are waited for (reading the log as soon as the file shows raced the line).
  for (let i = 0; !existsSync(join(rootfs, "tmp/ready")) || !/"msg":"agent ready"/.test(agentLog); i++) {
    assert.ok(i < 200 && agent.exitCode === null, `the agent did not become ready:\n${agentLog}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // It stays up until signalled (with no metrics server it once exited 0 right after ready).
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok(
    agent.exitCode === null && agent.signalCode === null,
    `the agent exited unsignalled:\n${agentLog}`,
  );
  // chroot execs the entrypoint: the pid is the agent's, and its mappings show the preloaded allocator.
  const maps = readFileSync(`/proc/${agent.pid}/maps`, "utf8");
  for (const lib of preloads) assert.ok(maps.includes(lib), `the agent has not mapped ${lib}:\n${maps}`);
  const show = inImage([...cfg.Entrypoint, "datapath", "show", "--bpffs-root", "/tmp/bpffs/sluice"]);
  assert.equal(show.status, 0, show.stderr);
  assert.match(show.stdout, /ipcache: \d+ entries/);
  agent.kill("SIGTERM");
  assert.equal(await exited(agent, 10_000), 0, `the agent did not exit on SIGTERM:\n${agentLog}`);
  const remove = inImage([...cfg.Entrypoint, "datapath", "remove", "--bpffs-root", "/tmp/bpffs/sluice"]);
  assert.equal(remove.status, 0, remove.stderr);

  // The probe, both ends in the image: serve answers with its name, connect reports it.
  const [tcp, udp] = [await freePort(), await freePort()];
  const server = spawn(
    "chroot",
    [
      rootfs,
      ...cfg.Entrypoint,
      "probe",
      "serve",
      "--ports",
      `${tcp}/TCP,${udp}/UDP`,
      "--ip",
      "127.0.0.1",
      "--name",
      "in-image",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  children.push(server);
  await new Promise<void>((ok, fail) => {
    let err = "";
    server.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
      if (err.includes("listening")) ok();
    });
    server.once("exit", (code) => fail(new Error(`probe serve exited (${code}): ${err}`)));
  });
  const connect = inImage([
    ...cfg.Entrypoint,
    "probe",
    "connect",
    "--to",
    "127.0.0.1",
    "--ports",
    `${tcp}/TCP,${udp}/UDP`,
    "-o",
    "json",
  ]);
  assert.equal(connect.status, 0, connect.stderr);
  assert.deepEqual(
    (JSON.parse(connect.stdout) as Array<{ result: string; reply?: string }>).map((r) => [r.result, r.reply]),
    [
      ["open", "in-image"],
      ["open", "in-image"],
    ],
  );
  server.kill("SIGTERM");
  assert.equal(await exited(server, 5000), 0, "probe serve did not exit on SIGTERM");

  // The pause image: a static binary that sleeps until SIGTERM.
  const p = openArchive(pause.archive, join(tmp, "oci-pause"), pause.image);
  assert.equal(p.digest, pause.digest);
  assert.deepEqual(p.config.config.Entrypoint, ["/pause"]);
  const pauseRoot = join(tmp, "pause-rootfs");
  unpack(p.layerFiles, pauseRoot);
  const version = run("chroot", [pauseRoot, "/pause", "-v"]);
  assert.equal(version.status, 0, version.stderr);
  const pauser = spawn("chroot", [pauseRoot, "/pause"], { stdio: "ignore" });
  children.push(pauser);
  assert.equal(await exited(pauser, 500), "timeout", "pause did not keep running");
  pauser.kill("SIGTERM");
  assert.equal(await exited(pauser, 5000), 0, "pause did not exit on SIGTERM");
});

function chartAppVersion(): string {
  const chart = readFileSync(join(ROOT, "charts/sluice/Chart.yaml"), "utf8");
  const m = /^appVersion:\s*"?([^"\s]+)"?\s*$/m.exec(chart);
  if (!m) throw new Error("no appVersion in charts/sluice/Chart.yaml");
  return m[1];
}

// The program's absolute path in the image, by the image's PATH (chroot alone would search the host's).
function findOnPath(rootfs: string, path: readonly string[], program: string): string {
  const dir = path.find((d) => existsSync(join(rootfs, d, program)));
  if (!dir) throw new Error(`${program} is not on the image's PATH`);
  return join(dir, program);
}
