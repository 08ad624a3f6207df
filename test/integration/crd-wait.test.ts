// waitCrdsEstablished (operator/src/lab/cluster-setup.ts) against a real API server and the real kubectl:
// a CRD without any condition yet (as one just applied can be for a moment, reproduced here by removing
// its conditions through the status subresource) makes `kubectl wait` fail at once; the helper waits on
// until the CRD is Established, and still fails, with kubectl's words, when it never is.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { kubectl, kubectlOk, waitCrdsEstablished } from "../../operator/src/lab/cluster-setup.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";

const NAME = "gadgets.crd-wait.sluice.test";
const CRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: ${NAME}}
spec:
  group: crd-wait.sluice.test
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}
`;

describe("waiting for a CRD to be Established (real API server, real kubectl)", () => {
  let api: ApiServer;
  before(async () => {
    api = await startApiServer();
    await kubectlOk(["apply", "-f", "-"], api.kubeconfigPath, CRD);
    await waitCrdsEstablished(api.kubeconfigPath, [NAME]);
  });
  after(async () => {
    await api?.stop();
  });

  const setConditions = (conditions: unknown[] | undefined) =>
    kubectlOk(
      [
        "patch",
        "crd",
        NAME,
        "--subresource=status",
        "--type=json",
        "-p",
        JSON.stringify(
          conditions === undefined
            ? [{ op: "remove", path: "/status/conditions" }]
            : [{ op: "add", path: "/status/conditions", value: conditions }],
        ),
      ],
      api.kubeconfigPath,
    );
  const established = () => {
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    return [
      { type: "NamesAccepted", status: "True", reason: "NoConflicts", message: "", lastTransitionTime: now },
      {
        type: "Established",
        status: "True",
        reason: "InitialNamesAccepted",
        message: "",
        lastTransitionTime: now,
      },
    ];
  };

  test("no condition yet: kubectl wait fails at once, the helper waits until Established", async () => {
    await setConditions(undefined);
    const raw = await kubectl(
      ["wait", "--for=condition=Established", "--timeout=5s", "crd", NAME],
      api.kubeconfigPath,
    );
    assert.notEqual(raw.code, 0);
    assert.match(raw.stderr, /\.status\.conditions accessor error/);

    const t0 = Date.now();
    const waiting = waitCrdsEstablished(api.kubeconfigPath, [NAME], {}, 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    await setConditions(established());
    await waiting;
    assert.ok(Date.now() - t0 >= 1500, "the helper returned before the CRD was Established");
  });

  test("never Established: the helper fails by its deadline with kubectl's error", async () => {
    await setConditions(undefined);
    await assert.rejects(
      waitCrdsEstablished(api.kubeconfigPath, [NAME], {}, 2_000),
      /kubectl wait .* failed: .*\.status\.conditions accessor error/s,
    );
    await setConditions(established());
  });
});
