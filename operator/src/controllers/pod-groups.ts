// The pods a policy status counts, grouped by namespace and label set so that finding what a policy
// selects costs one selector match per group (10,000 label sets for 50,000 pods at issue 14's
// scale), not per pod, and a namespaced policy looks at its own namespace only. Kept up to date
// from pod events by the status controller; which groups a pod event touched tells it which
// policies to recompute. Host-network and finished pods are left out, as policy-status.ts wants.
import { labelSetKey } from "../identity/labels.ts";
import type { NamespaceMatch } from "../policy/normalize.ts";
import type { PodObject } from "./identity-controller.ts";
import { type PodView, type PolicyView, selects } from "./policy-status.ts";

export interface PodGroup {
  namespace: string;
  labels: Readonly<Record<string, string>>;
  /** pod name → node name ("" when not scheduled) */
  pods: Map<string, string>;
}

interface Placement {
  group: PodGroup;
  node: string;
}

type NsLabels = (ns: string) => Readonly<Record<string, string>> | undefined;

export class PodGroups {
  private readonly byNamespace = new Map<string, Map<string, PodGroup>>();
  private readonly placed = new Map<string, Placement>();

  /**
   * Records a pod's current state (or its deletion); returns the groups whose membership or nodes
   * changed (the old and the new), which are what a policy could see differently now.
   */
  update(p: PodObject, deleted = false): PodGroup[] {
    const ns = p.metadata.namespace ?? "default";
    const name = p.metadata.name ?? "";
    const key = `${ns}/${name}`;
    const before = this.placed.get(key);
    const counted =
      !deleted && !p.spec?.hostNetwork && !["Succeeded", "Failed"].includes(p.status?.phase ?? "");
    const labels = p.metadata.labels ?? {};
    const node = p.spec?.nodeName ?? "";
    const labelKey = labelSetKey(labels);
    if (before && counted && before.node === node && labelSetKey(before.group.labels) === labelKey) return [];
    if (before) {
      before.group.pods.delete(name);
      this.placed.delete(key);
    }
    let group: PodGroup | undefined;
    if (counted) {
      let groups = this.byNamespace.get(ns);
      if (!groups) {
        groups = new Map();
        this.byNamespace.set(ns, groups);
      }
      group = groups.get(labelKey);
      if (!group) {
        group = { namespace: ns, labels, pods: new Map() };
        groups.set(labelKey, group);
      }
      group.pods.set(name, node);
      this.placed.set(key, { group, node });
    }
    if (before && before.group.pods.size === 0) {
      const groups = this.byNamespace.get(ns);
      groups?.delete(labelSetKey(before.group.labels));
      if (groups?.size === 0) this.byNamespace.delete(ns);
    }
    const touched = [before?.group, group].filter((g): g is PodGroup => g !== undefined);
    if (touched.length === 2 && touched[0] === touched[1]) touched.pop();
    return touched;
  }

  /** The groups of the namespaces a policy's subject can be in. */
  private *candidates(subject: NamespaceMatch | undefined): Iterable<PodGroup> {
    if (subject?.kind === "name") {
      yield* this.byNamespace.get(subject.name)?.values() ?? [];
      return;
    }
    for (const groups of this.byNamespace.values()) yield* groups.values();
  }

  /** One view per pod the policy selects (what aggregate() counts), found group by group. */
  *selected(policy: PolicyView, nsLabels: NsLabels): Iterable<PodView> {
    for (const g of this.candidates(policy.subjectNamespace)) {
      if (!selects(policy, { namespace: g.namespace, labels: g.labels }, nsLabels)) continue;
      for (const node of g.pods.values())
        yield { namespace: g.namespace, labels: g.labels, nodeName: node || undefined };
    }
  }
}
