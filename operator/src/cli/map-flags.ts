// The agent's datapath limits as flags: the BPF map sizes (datapath/kernel/map-sizes.ts) and the most
// policy entries one endpoint may have. Every flag is optional: unset, the build's size. Bad values
// are usage errors naming the flag and its bounds.
import { DEFAULT_MAP_SIZES, MAP_SIZE_LIMITS, type MapSizes } from "../datapath/kernel/map-sizes.ts";
import { DEFAULT_CAPACITY } from "../policy/compile.ts";
import { UsageError } from "./usage.ts";

const FLAGS: Readonly<Record<keyof MapSizes, string>> = {
  policy: "map-policy-entries",
  ipcache: "map-ipcache-entries",
  endpoints: "map-endpoints",
  conntrack: "map-conntrack-entries",
};
const ENDPOINT_POLICY = "endpoint-policy-entries";
const MAX_ENDPOINT_POLICY = 1 << 25;

export const mapSizeOptions = {
  [FLAGS.policy]: { type: "string" },
  [FLAGS.ipcache]: { type: "string" },
  [FLAGS.endpoints]: { type: "string" },
  [FLAGS.conntrack]: { type: "string" },
  [ENDPOINT_POLICY]: { type: "string" },
} as const;

export const mapSizeUsage =
  `[--${FLAGS.policy} N] [--${FLAGS.ipcache} N] [--${FLAGS.endpoints} N] [--${FLAGS.conntrack} N]\n` +
  `         [--${ENDPOINT_POLICY} N]   (BPF map sizes, default ${DEFAULT_MAP_SIZES.policy}, ${DEFAULT_MAP_SIZES.ipcache}, ` +
  `${DEFAULT_MAP_SIZES.endpoints}, ${DEFAULT_MAP_SIZES.conntrack};\n` +
  `                                       policy entries one endpoint may have, default ${DEFAULT_CAPACITY}\n` +
  "                                       or half the policy map;\n" +
  "                                       an endpoint whose policy does not fit fails closed)";

export interface DatapathLimits {
  mapSizes: MapSizes;
  endpointPolicyEntries: number;
}

function integer(
  values: Record<string, unknown>,
  flag: string,
  min: number,
  max: number,
): number | undefined {
  const v = values[flag];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || !/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`--${flag}: ${JSON.stringify(v)} is not an integer from ${min} to ${max}`);
  return n;
}

export function datapathLimits(values: Record<string, unknown>): DatapathLimits {
  const mapSizes = { ...DEFAULT_MAP_SIZES };
  for (const k of Object.keys(FLAGS) as (keyof MapSizes)[]) {
    const { min, max } = MAP_SIZE_LIMITS[k];
    mapSizes[k] = integer(values, FLAGS[k], min, max) ?? mapSizes[k];
  }
  // By default no more than an endpoint's two generations can hold in the policy map; a bigger limit
  // leaves the node's map as the only limit (the writer fails such an endpoint closed).
  const fits = Math.floor(mapSizes.policy / 2);
  const endpointPolicyEntries =
    integer(values, ENDPOINT_POLICY, 1, MAX_ENDPOINT_POLICY) ?? Math.min(DEFAULT_CAPACITY, fits);
  return { mapSizes, endpointPolicyEntries };
}
