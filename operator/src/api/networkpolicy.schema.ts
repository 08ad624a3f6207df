// networking.k8s.io/v1 NetworkPolicy and metav1.ObjectMeta as structural schemas of their Go types: what
// the API server's JSON decoding checks (field types, int32 ranges, unknown fields under
// fieldValidation=Strict) before its validation code runs. No field is required and no value is
// constrained here: ValidateNetworkPolicy's rules are in networkpolicy.ts, with the API server's fields.
const str = { type: "string" };
const stringMap = { type: "object", additionalProperties: str };
const int32 = { type: "integer", format: "int32" };
const loose = { type: "object", "x-kubernetes-preserve-unknown-fields": true };

export const objectMetaSchema = {
  type: "object",
  properties: {
    name: str,
    generateName: str,
    namespace: str,
    selfLink: str,
    uid: str,
    resourceVersion: str,
    generation: { type: "integer", format: "int64" },
    creationTimestamp: str,
    deletionTimestamp: str,
    deletionGracePeriodSeconds: { type: "integer", format: "int64" },
    labels: stringMap,
    annotations: stringMap,
    ownerReferences: { type: "array", items: loose },
    finalizers: { type: "array", items: str },
    managedFields: { type: "array", items: loose },
  },
};

const labelSelector = {
  type: "object",
  properties: {
    matchLabels: stringMap,
    matchExpressions: {
      type: "array",
      items: {
        type: "object",
        properties: { key: str, operator: str, values: { type: "array", items: str } },
      },
    },
  },
};
const port = {
  type: "object",
  properties: {
    protocol: str,
    port: { "x-kubernetes-int-or-string": true, format: "int32" },
    endPort: int32,
  },
};
const peer = {
  type: "object",
  properties: {
    podSelector: labelSelector,
    namespaceSelector: labelSelector,
    ipBlock: { type: "object", properties: { cidr: str, except: { type: "array", items: str } } },
  },
};
export const networkPolicySchema = {
  type: "object",
  properties: {
    apiVersion: str,
    kind: str,
    metadata: objectMetaSchema,
    spec: {
      type: "object",
      properties: {
        podSelector: labelSelector,
        policyTypes: { type: "array", items: str },
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
