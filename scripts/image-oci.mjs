// Writes one OCI image layout (oci-layout, index.json, blobs/sha256/...) from layer tarballs that
// scripts/image-build.sh assembled; the caller tars the layout into the archive. Everything that goes
// into a digest is a function of the spec: fixed `created` times, no random ids, keys in a fixed
// order, and gzip -n (GNU gzip: no name or time in the header; its output does not depend on the CPU,
// unlike the SIMD-tuned zlib inside Node). Compressed layers are cached by their uncompressed digest.
//
// usage: node scripts/image-oci.mjs SPEC.json   (prints {digest, manifestSize, config, layers} as JSON)
//
// SPEC: {layoutDir, cacheDir, ref, created, config: {User, Env, Entrypoint, Cmd?, WorkingDir, Labels},
//        layers: [{tar, createdBy}]}
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const blobs = join(spec.layoutDir, "blobs", "sha256");
mkdirSync(blobs, { recursive: true });
mkdirSync(spec.cacheDir, { recursive: true });

function sha256File(path) {
  const hash = createHash("sha256");
  const fd = openSync(path, "r");
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    for (let n; (n = readSync(fd, buf)) > 0; ) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return `sha256:${hash.digest("hex")}`;
}

function writeBlob(bytes) {
  const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
  writeFileSync(join(blobs, digest.slice(7)), bytes);
  return { digest, size: bytes.length };
}

const gzipVersion = execFileSync("gzip", ["--version"], { encoding: "utf8" }).split("\n")[0].replace(/\W+/g, "-");

// The layer's gzip blob: from the cache when this exact tar was compressed before (the Debian and
// Node layers rarely change), else gzip -n -9 into the cache.
function compressed(tar, diffId) {
  const cached = join(spec.cacheDir, `${diffId.slice(7)}.${gzipVersion}.9.gz`);
  if (!existsSync(cached)) {
    const tmp = `${cached}.${process.pid}.tmp`;
    const out = openSync(tmp, "w");
    const r = spawnSync("gzip", ["-n", "-9", "-c", tar], { stdio: ["ignore", out, "inherit"] });
    closeSync(out);
    if (r.status !== 0) throw new Error(`gzip ${tar} failed (${r.status ?? r.signal})`);
    renameSync(tmp, cached);
  }
  const now = new Date();
  utimesSync(cached, now, now); // the build script prunes entries unused for a month
  return cached;
}

const layers = spec.layers.map((l) => {
  const diffId = sha256File(l.tar);
  const gz = compressed(l.tar, diffId);
  const digest = sha256File(gz);
  const size = statSync(gz).size;
  const target = join(blobs, digest.slice(7));
  if (!existsSync(target)) copyFileSync(gz, target);
  return { digest, size, diffId, uncompressedSize: statSync(l.tar).size, createdBy: l.createdBy };
});

const c = spec.config;
const imageConfig = {
  created: spec.created,
  architecture: "amd64",
  os: "linux",
  config: {
    User: c.User,
    Env: c.Env,
    Entrypoint: c.Entrypoint,
    ...(c.Cmd ? { Cmd: c.Cmd } : {}),
    WorkingDir: c.WorkingDir,
    Labels: c.Labels,
  },
  rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
  history: layers.map((l) => ({ created: spec.created, created_by: l.createdBy })),
};
const config = writeBlob(Buffer.from(JSON.stringify(imageConfig)));

const manifest = {
  schemaVersion: 2,
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: config.digest, size: config.size },
  layers: layers.map((l) => ({
    mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
    digest: l.digest,
    size: l.size,
  })),
};
const manifestBlob = writeBlob(Buffer.from(JSON.stringify(manifest)));

// ref.name is the tag (the OCI convention); io.containerd.image.name is what `ctr images import`
// names the image by, whole, without needing --base-name.
const tag = spec.ref.slice(spec.ref.lastIndexOf(":") + 1);
const index = {
  schemaVersion: 2,
  mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [
    {
      mediaType: manifest.mediaType,
      digest: manifestBlob.digest,
      size: manifestBlob.size,
      platform: { architecture: "amd64", os: "linux" },
      annotations: { "io.containerd.image.name": spec.ref, "org.opencontainers.image.ref.name": tag },
    },
  ],
};
writeFileSync(join(spec.layoutDir, "index.json"), JSON.stringify(index));
writeFileSync(join(spec.layoutDir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));

process.stdout.write(
  `${JSON.stringify({
    digest: manifestBlob.digest,
    manifestSize: manifestBlob.size,
    config: config.digest,
    layers: layers.map(({ digest, size, diffId, uncompressedSize, createdBy }) => ({
      digest,
      size,
      diffId,
      uncompressedSize,
      createdBy,
    })),
  })}\n`,
);
