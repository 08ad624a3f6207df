// The agent's map size flags (cli/map-flags.ts) and what they size (datapath/kernel/map-sizes.ts):
// defaults are the build's, bad values are usage errors naming the flag and its bounds.
import assert from "node:assert/strict";
import { test } from "node:test";
import { datapathLimits } from "../../operator/src/cli/map-flags.ts";
import { UsageError } from "../../operator/src/cli/usage.ts";
import { enums } from "../../operator/src/datapath/codec/layout.generated.ts";
import { DEFAULT_MAP_SIZES, maxEntriesOf } from "../../operator/src/datapath/kernel/map-sizes.ts";
import { MapNames } from "../../operator/src/datapath/kernel/maps.ts";
import { DEFAULT_CAPACITY } from "../../operator/src/policy/compile.ts";

const CAP = enums.sl_capacity;

test("no flag: the build's sizes, every map as bpf/include/sluice_maps.h declares it", () => {
  const l = datapathLimits({});
  assert.deepEqual(l.mapSizes, DEFAULT_MAP_SIZES);
  assert.equal(l.endpointPolicyEntries, DEFAULT_CAPACITY);
  const m = maxEntriesOf(l.mapSizes);
  assert.equal(m[MapNames.policySets], CAP.SL_MAX_POLICY);
  assert.equal(m[MapNames.ipHosts6], CAP.SL_MAX_IPCACHE);
  assert.equal(m[MapNames.endpoints], CAP.SL_MAX_ENDPOINTS);
  assert.equal(m[MapNames.counters], CAP.SL_MAX_COUNTERS);
  assert.equal(m[MapNames.sources], CAP.SL_MAX_SOURCES);
  assert.equal(m[MapNames.conntrack6], CAP.SL_MAX_CONNTRACK);
});

test("sizes from flags; the per-endpoint limit defaults to what two generations can hold", () => {
  const l = datapathLimits({
    "map-policy-entries": "1000",
    "map-endpoints": "100",
    "map-conntrack-entries": "8192",
  });
  assert.deepEqual(l.mapSizes, { ...DEFAULT_MAP_SIZES, policy: 1000, endpoints: 100, conntrack: 8192 });
  assert.equal(l.endpointPolicyEntries, 500);
  assert.equal(maxEntriesOf(l.mapSizes)[MapNames.counters], 400, "a counter slot per endpoint");
  assert.equal(
    datapathLimits({ "map-policy-entries": "1000", "endpoint-policy-entries": "900" }).endpointPolicyEntries,
    900,
  );
});

test("bad values are usage errors naming the flag and the bounds", () => {
  for (const [flag, value, bounds] of [
    ["map-policy-entries", "0", "from 16 to 67108864"],
    ["map-policy-entries", "1e3", "from 16"],
    ["map-endpoints", "70000", "from 1 to 65536"],
    ["map-conntrack-entries", "-5", "from 1024"],
    ["endpoint-policy-entries", "x", "from 1"],
  ] as const)
    assert.throws(
      () => datapathLimits({ [flag]: value }),
      (e: unknown) =>
        e instanceof UsageError && e.message.startsWith(`--${flag}: "${value}" is not an integer ${bounds}`),
      `${flag} ${value}`,
    );
});
