// The CLI's manners, through bin/sluice as a user runs it: every command and subcommand (from
// commands.ts, so a new one is covered the day it is added) answers -h/--help on stdout with exit 0
// and a bogus flag with exit 2 and one stderr line naming the command and the flag; version, -o
// json|yaml, - for stdin, and messages that count right and keep the paths the user typed.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { commands } from "../../operator/src/cli/commands.ts";
import { kubeConfigFromFlags } from "../../operator/src/cli/kube-flags.ts";
import { DATAPATH_VERSION } from "../../operator/src/datapath/kernel/maps.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const SLUICE = join(root, "bin/sluice");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function sluice(args: readonly string[], stdin?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(SLUICE, args, { cwd: root, encoding: "utf8" }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr }),
    );
    child.stdin?.end(stdin ?? "");
  });
}

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

// Every command line a user can type: each command, and each subcommand of those that have some.
const invocations: string[][] = Object.entries(commands).flatMap(([name, c]) =>
  c.subcommands ? [[name], ...c.subcommands.map((s) => [name, s])] : [[name]],
);

describe("every command and subcommand", { concurrency: true }, () => {
  test("the list comes from commands.ts, subcommands included", () => {
    assert.ok(invocations.some((i) => i.join(" ") === "lab run"));
    assert.ok(invocations.some((i) => i.join(" ") === "probe stats"));
    assert.ok(invocations.some((i) => i.join(" ") === "datapath show"));
    assert.ok(invocations.length >= 20, `${invocations.length} invocations`);
  });

  for (const args of invocations) {
    const name = args.join(" ");
    test(`sluice ${name} --help: usage on stdout, exit 0`, async () => {
      // -h on the commands alone: every subcommand parses through the same helper, and each
      // invocation costs a Node start.
      for (const flag of args.length === 1 ? ["--help", "-h"] : ["--help"]) {
        const r = await sluice([...args, flag]);
        assert.equal(r.code, 0, `${flag}: ${r.stderr}`);
        assert.equal(r.stderr, "", flag);
        assert.match(r.stdout, new RegExp(`^usage: sluice ${args[0]}\\b`), flag);
        // A command's own usage names it (a subcommand's, the subcommand).
        assert.ok(r.stdout.includes(`sluice ${name}`), `${flag}: ${r.stdout}`);
      }
    });

    test(`sluice ${name} --bogus-flag: one line naming it, exit 2`, async () => {
      const r = await sluice([...args, "--bogus-flag"]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.ok(r.stderr.startsWith(`sluice ${name}: --bogus-flag: unknown flag`), r.stderr);
      assert.equal(r.stdout, "");
    });
  }

  for (const [name, c] of Object.entries(commands))
    if (c.subcommands)
      test(`sluice ${name} without or with an unknown subcommand: one line, exit 2`, async () => {
        const none = await sluice([name]);
        assert.equal(none.code, 2);
        assert.deepEqual(lines(none.stderr), [
          `sluice ${name}: a subcommand is required: one of ${c.subcommands?.join(", ")}`,
        ]);
        const bogus = await sluice([name, "bogus"]);
        assert.equal(bogus.code, 2);
        assert.equal(lines(bogus.stderr).length, 1);
        assert.match(bogus.stderr, new RegExp(`^sluice ${name}: "bogus": unknown subcommand`));
        const help = await sluice([name, "help"]);
        assert.equal(help.code, 0);
        for (const s of c.subcommands ?? []) assert.ok(help.stdout.includes(`sluice ${name} ${s}`), s);
      });
});

describe("top level", { concurrency: true }, () => {
  test("sluice help lists every command; no command is a usage error; an unknown one is one line", async () => {
    const help = await sluice(["help"]);
    assert.equal(help.code, 0);
    for (const name of Object.keys(commands)) assert.match(help.stdout, new RegExp(`^  ${name} `, "m"));
    const none = await sluice([]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /^usage: sluice <command>/);
    const unknown = await sluice(["bogus"]);
    assert.equal(unknown.code, 2);
    assert.equal(lines(unknown.stderr).length, 1);
    assert.match(unknown.stderr, /^sluice: "bogus": unknown command/);
  });

  test("sluice version and --version: the release and the datapath layout, as text, json, yaml", async () => {
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
    for (const args of [["version"], ["--version"]]) {
      const text = await sluice(args);
      assert.equal(text.code, 0, text.stderr);
      assert.ok(text.stdout.includes(`sluice ${pkg.version}`), text.stdout);
      assert.ok(text.stdout.includes(DATAPATH_VERSION), text.stdout);
      const want = { version: pkg.version, datapath: DATAPATH_VERSION };
      const json = JSON.parse((await sluice([...args, "-o", "json"])).stdout) as Record<string, unknown>;
      assert.deepEqual({ version: json.version, datapath: json.datapath }, want);
      assert.equal(typeof json.layoutVersion, "number");
      assert.deepEqual(parseYaml((await sluice([...args, "-o", "yaml"])).stdout), json);
    }
  });
});

describe("usage errors name the bad flag and value", { concurrency: true }, () => {
  const cases: Array<[string[], string]> = [
    [["matrix", "-f", "samples/demo", "--ports", "80/XTP"], 'sluice matrix: --ports: "80/XTP"'],
    [
      ["matrix", "-f", "samples/demo", "-o", "xml"],
      'sluice matrix: -o: "xml" is not one of table, json, yaml',
    ],
    [["matrix"], "sluice matrix: -f: at least one file"],
    [["matrix", "-f"], "sluice matrix: -f, --file: a value is required"],
    [["plan", "--before", "-", "--after", "-"], "sluice plan: --before/--after: - (stdin) can be given once"],
    [["validate"], "sluice validate: at least one file"],
    [["lab", "run", "-f", "samples/demo", "--ports", "x"], 'sluice lab run: --ports: "x"'],
    [
      ["lab", "up", "-f", "samples/demo", "--timeout", "soon"],
      'sluice lab up: --timeout: "soon" is not a duration',
    ],
    [["lab", "clean", "extra"], 'sluice lab clean: "extra": unexpected argument'],
    [["datapath", "show"], "sluice datapath show: --bpffs-root is required"],
    [["datapath", "replace", "--bpffs-root", "/x", "--times", "0"], 'sluice datapath replace: --times: "0"'],
    [["probe", "connect", "--ports", "80"], "sluice probe connect: --to is required"],
    [["probe", "stats", "--port", "80/TCP"], "sluice probe stats: --port: one UDP port"],
    [
      ["probe", "send", "--to", "10.0.0.1", "--port", "9/UDP", "--stream", "s", "--rate", "0"],
      "sluice probe send: --rate",
    ],
    [["demo", "--rate", "fast"], 'sluice demo: --rate: "fast" is not a positive integer'],
    [["version", "-o", "xml"], 'sluice version: -o: "xml"'],
  ];
  for (const [args, start] of cases)
    test(`sluice ${args.join(" ")}`, async () => {
      const r = await sluice(args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.ok(r.stderr.startsWith(start), r.stderr);
      assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/, "no stack");
    });

  test("a missing input is a failure (exit 1), with the path as typed", async () => {
    const r = await sluice(["matrix", "-f", "no/such.yaml"]);
    assert.equal(r.code, 1);
    assert.deepEqual(lines(r.stderr), ["sluice matrix: -f no/such.yaml: no such file or directory"]);
  });
});

describe("-o json|yaml and - for stdin", { concurrency: true }, () => {
  // The demo as one stream of documents, as `kubectl get -o yaml` or a generator would pipe it.
  const demoFiles = ["samples/demo/topology.yaml", "samples/demo/policies"];
  const demoStream = async () => {
    const { yamlFiles } = await import("../../operator/src/manifests/load.ts");
    return yamlFiles(demoFiles.map((f) => join(root, f)))
      .map((f) => readFileSync(f, "utf8"))
      .join("\n---\n");
  };

  test("matrix: -o json and -o yaml are the same data; -f - reads stdin", async () => {
    const json = JSON.parse((await sluice(["matrix", "-f", "samples/demo", "-o", "json"])).stdout);
    assert.ok(json.results.length > 0);
    assert.deepEqual(parseYaml((await sluice(["matrix", "-f", "samples/demo", "-o", "yaml"])).stdout), json);
    const piped = await sluice(["matrix", "-f", "-", "-o", "json"], await demoStream());
    assert.equal(piped.code, 0, piped.stderr);
    assert.deepEqual(JSON.parse(piped.stdout), json);
  });

  test("plan: --after - reads stdin; -o yaml", async () => {
    const args = ["plan", "--before", "samples/demo/topology.yaml", "--after"];
    const files = JSON.parse((await sluice([...args, "samples/demo", "-o", "json"])).stdout);
    assert.ok(files.changes.length > 0);
    const piped = await sluice([...args, "-", "-o", "yaml"], await demoStream());
    assert.equal(piped.code, 0, piped.stderr);
    assert.deepEqual(parseYaml(piped.stdout), files);
  });

  test("validate: - reads stdin; -o json lists the errors; the counts read right", async () => {
    const bad = readFileSync(join(root, "test/unit/fixtures/invalid/bad.yaml"), "utf8");
    const piped = await sluice(["validate", "-", "-o", "json"], bad);
    assert.equal(piped.code, 1);
    const json = JSON.parse(piped.stdout) as {
      documents: number;
      files: number;
      errors: Array<{ path: string }>;
    };
    assert.equal(json.files, 1);
    assert.ok(json.errors.length > 1);
    assert.ok(json.errors.every((e) => e.path === "<stdin>"));
    assert.deepEqual(parseYaml((await sluice(["validate", "-", "-o", "yaml"], bad)).stdout), json);

    const dir = mkdtempSync(join(tmpdir(), "sluice-cli-"));
    try {
      const one = bad.split(/^---$/m)[0];
      writeFileSync(join(dir, "one.yaml"), one);
      const r = await sluice(["validate", join(dir, "one.yaml")]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^\d+ errors? in 1 file\n$/);
      const errors = lines(r.stdout).length;
      assert.equal(r.stderr, `${errors} ${errors === 1 ? "error" : "errors"} in 1 file\n`);
      writeFileSync(join(dir, "ns.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n");
      const valid = await sluice(["validate", join(dir, "ns.yaml")]);
      assert.equal(valid.code, 0, valid.stderr);
      // What was not checked is said: a typo in a policy's kind cannot make it vanish quietly.
      assert.equal(
        valid.stderr,
        "1 document in 1 file valid (1 object passed over, not policies: Namespace)\n",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const many = await sluice(["validate", "samples/demo"]);
    assert.equal(many.code, 0);
    assert.match(
      many.stderr,
      /^\d+ documents in \d+ files valid( \(\d+ objects? passed over, not policies: [\w, ]+\))?\n$/,
    );
  });

  test("messages keep relative paths relative", async () => {
    const r = await sluice(["validate", "test/unit/fixtures/invalid"]);
    assert.equal(r.code, 1);
    assert.ok(lines(r.stdout).length > 0);
    for (const l of lines(r.stdout)) assert.ok(l.startsWith("test/unit/fixtures/invalid/bad.yaml:"), l);
    assert.equal(r.stderr, `${lines(r.stdout).length} errors in 1 file\n`);
  });
});

test("--kubeconfig and --context: the named context, or a message naming the one that is missing", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-kubeconfig-"));
  try {
    const path = join(dir, "config");
    const cluster = (name: string, server: string) => ({ name, cluster: { server } });
    const context = (name: string) => ({ name, context: { cluster: name, user: "u" } });
    writeFileSync(
      path,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [cluster("a", "https://a.example:6443"), cluster("b", "https://b.example:6443")],
        contexts: [context("a"), context("b")],
        users: [{ name: "u", user: { token: "t" } }],
        "current-context": "a",
      }),
    );
    assert.equal(
      kubeConfigFromFlags({ kubeconfig: path }).getCurrentCluster()?.server,
      "https://a.example:6443",
    );
    assert.equal(
      kubeConfigFromFlags({ kubeconfig: path, context: "b" }).getCurrentCluster()?.server,
      "https://b.example:6443",
    );
    assert.throws(() => kubeConfigFromFlags({ kubeconfig: path, context: "c" }), /no context named "c"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
