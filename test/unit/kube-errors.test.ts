import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ApiException } from "@kubernetes/client-node";
import {
  apiStatus,
  describeError,
  isAlreadyExists,
  isConflict,
  isNotFound,
} from "../../operator/src/kube/errors.ts";

describe("kube errors", () => {
  it("parses the raw body of an ApiException and never leaks its headers", () => {
    const body = JSON.stringify({
      kind: "Status",
      code: 409,
      reason: "AlreadyExists",
      message: 'securityidentities "300" already exists',
    });
    const err = new ApiException(409, "Conflict", body, {
      authorization: "Bearer SECRET",
      "set-cookie": "x",
    });
    assert.match(err.message, /SECRET/); // what client-node does, hence describeError
    assert.deepEqual(apiStatus(err), {
      code: 409,
      reason: "AlreadyExists",
      message: 'securityidentities "300" already exists',
    });
    assert.ok(isAlreadyExists(err));
    assert.ok(!isConflict(err));
    const d = describeError(err);
    assert.doesNotMatch(d, /SECRET|cookie/i);
    assert.match(d, /HTTP 409: AlreadyExists/);
  });

  it("conflict, not found, non-JSON bodies, plain errors", () => {
    assert.ok(isConflict(new ApiException(409, "", JSON.stringify({ reason: "Conflict" }), {})));
    assert.ok(isNotFound(new ApiException(404, "", "404 page not found", {})));
    assert.equal(apiStatus(new ApiException(500, "", "<html>oops</html>", {}))?.message, "<html>oops</html>");
    assert.equal(apiStatus(new Error("x")), undefined);
    assert.match(describeError(new Error("connect ECONNREFUSED")), /ECONNREFUSED/);
  });
});
