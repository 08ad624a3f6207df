// DatapathPins, the one owner of a datapath's pin root: the paths it derives, the attachments and older
// layouts' maps it finds. On a plain temporary directory: the names are what matters, not bpffs.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { LAYOUT_VERSION, MapNames } from "../../operator/src/datapath/kernel/maps.ts";
import { DatapathPins } from "../../operator/src/datapath/kernel/pins.ts";

test("every path under the root is derived from it", () => {
  const pins = new DatapathPins("/sys/fs/bpf/sluice");
  assert.equal(pins.map(MapNames.endpoints), `/sys/fs/bpf/sluice/${MapNames.endpoints}`);
  assert.equal(pins.link("veth1", "ingress"), "/sys/fs/bpf/sluice/links/veth1-ingress");
  assert.equal(pins.tcMarker("veth1", "egress"), "/sys/fs/bpf/sluice/tc/veth1-egress");
});

test("recorded attachments, older layouts' maps, and a root that is not there", () => {
  const root = mkdtempSync(join(tmpdir(), "sluice-pins-"));
  try {
    const pins = new DatapathPins(root);
    mkdirSync(join(root, "links"));
    mkdirSync(join(root, "tc"));
    writeFileSync(pins.link("lxc-a", "ingress"), "");
    writeFileSync(pins.link("lxc-a", "egress"), "");
    mkdirSync(pins.tcMarker("eth-b-1", "egress"));
    writeFileSync(join(root, "links", "not-a-hook"), "");
    const older = [`sl_ct_v${LAYOUT_VERSION - 1}`, "sl_cnt_v3"];
    for (const name of [...older, MapNames.endpoints, MapNames.verdicts, "sl_x_v99", "other"])
      writeFileSync(pins.map(name), "");
    assert.deepEqual(
      pins
        .links()
        .map((l) => `${l.mode} ${l.ifname} ${l.hook} ${l.pinPath}`)
        .sort(),
      [
        `tc eth-b-1 egress ${pins.tcMarker("eth-b-1", "egress")}`,
        `tcx lxc-a egress ${pins.link("lxc-a", "egress")}`,
        `tcx lxc-a ingress ${pins.link("lxc-a", "ingress")}`,
      ],
    );
    assert.deepEqual(pins.olderLayoutMaps().sort(), [...new Set(older)].sort());
    assert.ok(pins.exists());
    const gone = new DatapathPins(join(root, "missing"));
    assert.deepEqual(
      [gone.exists(), gone.links(), gone.olderLayoutMaps(), gone.names()],
      [false, [], [], []],
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
