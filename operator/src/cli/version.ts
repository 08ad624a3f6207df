// `sluice version [-o table|json|yaml]` (and `sluice --version`): the release, from package.json, and
// the datapath layout this build's programs and maps use, which decides whether an agent upgrade
// migrates the pinned maps. The layout comes from the generated constants, not the BPF addon, so this
// runs where no addon was built.
import { readFileSync } from "node:fs";
import { DATAPATH_VERSION, LAYOUT_VERSION } from "../datapath/kernel/maps.ts";
import { outputFormat, outputOption, writeOutput } from "./output.ts";
import { parseCommandArgs } from "./usage.ts";

export const usage = "usage: sluice version [-o table|json|yaml]   (also: sluice --version)";

export interface VersionInfo {
  version: string;
  datapath: string;
  layoutVersion: number;
}

export function versionInfo(): VersionInfo {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return { version: pkg.version, datapath: DATAPATH_VERSION, layoutVersion: LAYOUT_VERSION };
}

export async function versionMain(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs({ args: [...argv], options: outputOption, strict: true }, usage);
  const v = versionInfo();
  writeOutput(
    outputFormat(values.output),
    v,
    () => `sluice ${v.version}\ndatapath ${v.datapath} (map layout ${v.layoutVersion})`,
  );
  return 0;
}
