#!/usr/bin/env node
// Bundles the sluice CLI (operator/src/cli/main.ts) with esbuild for the container image: one ESM entry
// plus lazy chunks (splitting), so `sluice agent` loads the agent's code and the parts of its libraries
// it uses, not every module @kubernetes/client-node's index pulls in (issue 14 §1: an idle agent from the
// sources holds ~165 MB RSS, most of it client-node's generated API and model modules, compiled by V8).
// docs/image.md says how the image uses it; test/bench/memory.bench.ts measures what it saves.
//
// usage: node scripts/bundle.mjs [--src DIR] [--outdir DIR] [--root DIR] [--no-minify]
//   --src     the checkout to bundle (default: this one)
//   --outdir  where main.mjs and its chunks go (default: <src>/build/bundle; emptied first)
//   --root    the directory that will hold crds/, bpf/build/ and package.json next to the bundle at run
//             time (default: <src>); in the image, /opt/sluice/app with the bundle in its dist/
// Prints one JSON line: {"outdir","entry","files","bytes","packages"}; <outdir>/meta.json is esbuild's
// metafile (which module put how many bytes where) and <outdir>/licenses/ the bundled packages' licences.
//
// Deterministic: esbuild's output depends only on the inputs and options; every path it records is
// relative to --src (absWorkingDir), so two checkouts in different directories give the same bytes.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { parseArgs } from "node:util";
import * as esbuild from "esbuild";

const here = dirname(new URL(import.meta.url).pathname);
const { values } = parseArgs({
  options: {
    src: { type: "string", default: resolve(here, "..") },
    outdir: { type: "string" },
    root: { type: "string" },
    "no-minify": { type: "boolean", default: false },
  },
});
const src = resolve(values.src);
const outdir = resolve(values.outdir ?? join(src, "build/bundle"));
const root = resolve(values.root ?? src);
// How the bundle finds the app root at run time: a path relative to its own file, not an absolute one,
// so the same bytes work wherever the tree is unpacked.
const rootFromOut = `${relative(outdir, root).split(sep).join("/") || "."}/`;

// Modules find files next to them by `new URL("../../../crds/...", import.meta.url)` (schemas.ts, the
// addon loader, version.ts). In a bundle import.meta.url is the chunk's, so each source module's is
// rewritten to where that module sits in the tree (the image mirrors it: crds/, bpf/build/ under the
// app root). import.meta.main would be true for any module that lands in the entry chunk: only
// main.ts is the entry, so it is false elsewhere (lab/traffic-sender.ts runs itself when main).
const operatorSrc = join(src, "operator/src") + sep;
const rewriteMeta = {
  name: "sluice-import-meta",
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      if (!args.path.startsWith(operatorSrc)) return undefined;
      let text = readFileSync(args.path, "utf8");
      if (text.includes("import.meta")) {
        const rel = relative(src, args.path).split(sep).join("/");
        text = text
          .replace(/\bimport\.meta\.url\b/g, `new URL(${JSON.stringify(rel)}, __sluiceRoot).href`)
          .replace(/\bimport\.meta\.main\b/g, "false");
      }
      return { contents: text, loader: "ts" };
    });
  },
};

// Each chunk is an ES module: CommonJS code inside (most of the dependencies) calls require() for
// Node's built-ins, which esbuild's ESM output can only do through a real require in scope.
const banner = [
  'import { createRequire as __sluiceCreateRequire } from "node:module";',
  "const require = __sluiceCreateRequire(import.meta.url);",
  `const __sluiceRoot = new URL(${JSON.stringify(rootFromOut)}, import.meta.url);`,
].join("\n");

rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
const minify = !values["no-minify"];
const result = await esbuild.build({
  absWorkingDir: src,
  entryPoints: { main: "operator/src/cli/main.ts" },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node22",
  outExtension: { ".js": ".mjs" },
  // Next to main.mjs: the banner's path to the app root holds for every chunk alike.
  chunkNames: "[name]-[hash]",
  // Identifiers and whitespace: V8 parses less. keepNames so that class names in logs, errors and
  // `instanceof`-free checks (err.name) stay what the sources say.
  minify,
  keepNames: true,
  // The sources' own comments go; licences of bundled code are collected below instead.
  legalComments: "none",
  banner: { js: banner },
  // ws's optional native helpers: ws falls back to JavaScript when require() of them fails.
  external: ["bufferutil", "utf-8-validate"],
  plugins: [rewriteMeta],
  metafile: true,
  logLevel: "warning",
});

// The licences of what is inside, one directory per package (the image keeps no node_modules).
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (m) packages.add(input.slice(0, m.index + m[0].length));
}
const names = [];
for (const dir of [...packages].sort()) {
  const name = dir.replace(/^.*node_modules\//, "").replace(/\/$/, "");
  names.push(name);
  const abs = join(src, dir);
  for (const f of readdirSync(abs).sort()) {
    if (!/^(licen[cs]e|copying|notice)/i.test(f)) continue;
    mkdirSync(join(outdir, "licenses", name), { recursive: true });
    copyFileSync(join(abs, f), join(outdir, "licenses", name, f));
  }
}
writeFileSync(join(outdir, "meta.json"), `${JSON.stringify(result.metafile)}\n`);
const outputs = Object.entries(result.metafile.outputs);
process.stdout.write(
  `${JSON.stringify({
    outdir,
    entry: join(outdir, "main.mjs"),
    files: outputs.length,
    bytes: outputs.reduce((s, [, o]) => s + o.bytes, 0),
    packages: [...new Set(names)],
  })}\n`,
);
