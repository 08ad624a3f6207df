// The codecs of the datapath's shared structs, with the fields the header documents as network order.
import { structs } from "./layout.generated.ts";
import { StructCodec } from "./layout.ts";

export const ipcacheKey = new StructCodec("sl_ipcache_key", structs.sl_ipcache_key);
export const ip4Key = new StructCodec("sl_ip4_key", structs.sl_ip4_key);
export const ip6Key = new StructCodec("sl_ip6_key", structs.sl_ip6_key);
export const ipcacheValue = new StructCodec("sl_ipcache_value", structs.sl_ipcache_value);
export const endpointKey = new StructCodec("sl_endpoint_key", structs.sl_endpoint_key);
// any: raw bytes, one sl_policy_set per direction (writer/policy-encoder.ts writes them).
export const endpointValue = new StructCodec("sl_endpoint_value", structs.sl_endpoint_value);
export const policySetKey = new StructCodec("sl_policy_set_key", structs.sl_policy_set_key);
// rules, results: raw bytes, SL_POLICY_INLINE policyRule and policyValue records back to back.
export const policySet = new StructCodec("sl_policy_set", structs.sl_policy_set);
// match, mask: words whose bytes are a port in network order and a protocol (keys.ts: ruleWords).
export const policyRule = new StructCodec("sl_policy_rule", structs.sl_policy_rule);
export const policyExactKey = new StructCodec("sl_policy_exact_key", structs.sl_policy_exact_key, {
  port: "be",
} as const);
export const policyKey = new StructCodec("sl_policy_key", structs.sl_policy_key, {
  ep_id: "be",
  identity: "be",
  port: "be",
} as const);
export const policyValue = new StructCodec("sl_policy_value", structs.sl_policy_value);
export const ct4Key = new StructCodec("sl_ct4_key", structs.sl_ct4_key, {
  sport: "be",
  dport: "be",
} as const);
export const ct6Key = new StructCodec("sl_ct6_key", structs.sl_ct6_key, {
  sport: "be",
  dport: "be",
} as const);
export const sourceKey = new StructCodec("sl_source_key", structs.sl_source_key);
export const sourceValue = new StructCodec("sl_source_value", structs.sl_source_value);
export const ctValue = new StructCodec("sl_ct_value", structs.sl_ct_value);
export const counterValue = new StructCodec("sl_counter_value", structs.sl_counter_value);
export const ruleCounter = new StructCodec("sl_rule_counter", structs.sl_rule_counter);
// Layout 3's keys, read when migrating (datapath/migrate.ts).
export const v3CtKey = new StructCodec("sl_v3_ct_key", structs.sl_v3_ct_key, {
  sport: "be",
  dport: "be",
} as const);
export const v3CounterKey = new StructCodec("sl_v3_counter_key", structs.sl_v3_counter_key);
// Layout 4's endpoint value, read for each endpoint's counter slot when migrating.
export const v4EndpointValue = new StructCodec("sl_v4_endpoint_value", structs.sl_v4_endpoint_value);
export const config = new StructCodec("sl_config", structs.sl_config);
export const flowEvent = new StructCodec("sl_flow_event", structs.sl_flow_event, {
  sport: "be",
  dport: "be",
} as const);

export type IpcacheKey = ReturnType<typeof ipcacheKey.decode>;
export type Ip4Key = ReturnType<typeof ip4Key.decode>;
export type Ip6Key = ReturnType<typeof ip6Key.decode>;
export type IpcacheValue = ReturnType<typeof ipcacheValue.decode>;
export type EndpointKey = ReturnType<typeof endpointKey.decode>;
export type EndpointValue = ReturnType<typeof endpointValue.decode>;
export type PolicySetKey = ReturnType<typeof policySetKey.decode>;
export type PolicySet = ReturnType<typeof policySet.decode>;
export type PolicyRule = ReturnType<typeof policyRule.decode>;
export type PolicyExactKey = ReturnType<typeof policyExactKey.decode>;
export type PolicyKey = ReturnType<typeof policyKey.decode>;
export type PolicyValue = ReturnType<typeof policyValue.decode>;
export type Ct4Key = ReturnType<typeof ct4Key.decode>;
export type Ct6Key = ReturnType<typeof ct6Key.decode>;
export type CtValue = ReturnType<typeof ctValue.decode>;
export type SourceKey = ReturnType<typeof sourceKey.decode>;
export type SourceValue = ReturnType<typeof sourceValue.decode>;
export type CounterValue = ReturnType<typeof counterValue.decode>;
export type RuleCounter = ReturnType<typeof ruleCounter.decode>;
export type Config = ReturnType<typeof config.decode>;
export type V3CtKey = ReturnType<typeof v3CtKey.decode>;
export type V3CounterKey = ReturnType<typeof v3CounterKey.decode>;
export type V4EndpointValue = ReturnType<typeof v4EndpointValue.decode>;
export type FlowEventRecord = ReturnType<typeof flowEvent.decode>;
