// networking.k8s.io/v1 NetworkPolicy as a structural schema (the API server's validation, reduced
// to what a schema can say), for `sluice validate`.
const labelSelector = {
  type: "object",
  properties: {
    matchLabels: { type: "object", additionalProperties: { type: "string" } },
    matchExpressions: {
      type: "array",
      items: {
        type: "object",
        required: ["key", "operator"],
        properties: {
          key: { type: "string" },
          operator: { type: "string", enum: ["In", "NotIn", "Exists", "DoesNotExist"] },
          values: { type: "array", items: { type: "string" } },
        },
      },
    },
  },
};
const port = {
  type: "object",
  properties: {
    protocol: { type: "string", enum: ["TCP", "UDP", "SCTP"] },
    port: { "x-kubernetes-int-or-string": true },
    endPort: { type: "integer", minimum: 1, maximum: 65535 },
  },
};
const peer = {
  type: "object",
  properties: {
    podSelector: labelSelector,
    namespaceSelector: labelSelector,
    ipBlock: {
      type: "object",
      required: ["cidr"],
      properties: { cidr: { type: "string" }, except: { type: "array", items: { type: "string" } } },
    },
  },
};
export const networkPolicySchema = {
  type: "object",
  required: ["spec"],
  properties: {
    apiVersion: { type: "string" },
    kind: { type: "string" },
    metadata: { type: "object" },
    spec: {
      type: "object",
      required: ["podSelector"],
      properties: {
        podSelector: labelSelector,
        policyTypes: { type: "array", items: { type: "string", enum: ["Ingress", "Egress"] } },
        ingress: {
          type: "array",
          items: {
            type: "object",
            properties: { from: { type: "array", items: peer }, ports: { type: "array", items: port } },
          },
        },
        egress: {
          type: "array",
          items: {
            type: "object",
            properties: { to: { type: "array", items: peer }, ports: { type: "array", items: port } },
          },
        },
      },
    },
  },
};
