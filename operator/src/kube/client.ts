// The API clients a Sluice process uses, built from one kubeconfig.
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  KubeConfig,
  KubernetesObjectApi,
} from "@kubernetes/client-node";
import { shareDispatcher } from "./shared-dispatcher.ts";

export interface KubeClients {
  kc: KubeConfig;
  core: CoreV1Api;
  coordination: CoordinationV1Api;
  custom: CustomObjectsApi;
  events: EventsV1Api;
  objects: KubernetesObjectApi;
}

/**
 * Loads a kubeconfig file; without a path, the in-cluster service account or $KUBECONFIG. `context`
 * (kubectl's --context) picks one of the file's contexts instead of its current one.
 */
export function loadKubeConfig(path?: string, context?: string): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromFile(path);
  else kc.loadFromDefault();
  if (context !== undefined) {
    if (!kc.getContextObject(context))
      throw new Error(`kubeconfig ${path ?? "(default)"}: no context named ${JSON.stringify(context)}`);
    kc.setCurrentContext(context);
  }
  if (!kc.getCurrentCluster()) {
    throw new Error(`kubeconfig ${path ?? "(default)"}: the current context names no cluster`);
  }
  // One connection pool instead of a TLS handshake per request (shared-dispatcher.ts).
  return shareDispatcher(kc);
}

export function makeClients(kc: KubeConfig): KubeClients {
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    events: kc.makeApiClient(EventsV1Api),
    objects: KubernetesObjectApi.makeApiClient(kc),
  };
}
