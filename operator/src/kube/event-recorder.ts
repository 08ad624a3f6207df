// core/v1 Events on objects, aggregated like client-go's event correlator: the same
// (object, type, reason, message) within the window bumps count and lastTimestamp of one Event
// instead of creating another. Events are best effort: failures are reported, never thrown.
import { type CoreV1Api, PatchStrategy, setHeaderOptions, type CoreV1Event } from "@kubernetes/client-node";
import { describeError, isNotFound } from "./errors.ts";

export interface ObjectReference {
  apiVersion: string;
  kind: string;
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
}

export type EventType = "Normal" | "Warning";

interface Seen {
  name: string;
  namespace: string;
  count: number;
  first: Date;
  last: number;
}

export interface EventRecorderOptions {
  /** source.component / reportingComponent, e.g. "sluice-operator". */
  component: string;
  /** source.host / reportingInstance, e.g. the pod name. */
  instance?: string;
  /** Aggregation window. Default 10 min. */
  windowMs?: number;
  /** Remembered (object, reason, message) keys. Default 4096. */
  maxKeys?: number;
  /** Events are best effort: failures come here (with the request that failed), never thrown. */
  onError?: (description: string, verb: "create" | "patch") => void;
}

const MAX_MESSAGE = 1024;

export class EventRecorder {
  private readonly core: CoreV1Api;
  private readonly opts: EventRecorderOptions;
  private readonly seen = new Map<string, Seen>();
  private seq = 0;

  constructor(core: CoreV1Api, opts: EventRecorderOptions) {
    this.core = core;
    this.opts = opts;
  }

  /** Records an event; resolves to the Event's name, or undefined when it could not be written. */
  async record(
    obj: ObjectReference,
    type: EventType,
    reason: string,
    message: string,
  ): Promise<string | undefined> {
    const msg = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message;
    // Events of cluster-scoped objects live in "default", as the kubelet and kubectl expect.
    const namespace = obj.namespace || "default";
    const key = [obj.kind, namespace, obj.name, obj.uid ?? "", type, reason, msg].join("\u0000");
    const now = new Date();
    const windowMs = this.opts.windowMs ?? 600_000;
    const prev = this.seen.get(key);
    let verb: "create" | "patch" = "create";
    try {
      if (prev && now.getTime() - prev.last < windowMs) {
        verb = "patch";
        prev.count++;
        prev.last = now.getTime();
        this.touch(key, prev);
        try {
          await this.core.patchNamespacedEvent(
            {
              name: prev.name,
              namespace: prev.namespace,
              body: { count: prev.count, lastTimestamp: now.toISOString() },
            },
            setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
          );
          return prev.name;
        } catch (err) {
          if (!isNotFound(err)) throw err;
          this.seen.delete(key); // expired by the server's event TTL: start a new one
        }
      }
      verb = "create";
      const name = `${obj.name}.${now.getTime().toString(16)}${(this.seq++ % 4096).toString(16).padStart(3, "0")}`;
      const body: CoreV1Event = {
        metadata: { name, namespace },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.name,
          namespace: obj.namespace,
          uid: obj.uid,
          resourceVersion: obj.resourceVersion,
        },
        type,
        reason,
        message: msg,
        count: 1,
        firstTimestamp: now,
        lastTimestamp: now,
        source: { component: this.opts.component, host: this.opts.instance },
        reportingComponent: this.opts.component,
        reportingInstance: this.opts.instance ?? "",
      };
      await this.core.createNamespacedEvent({ namespace, body });
      this.touch(key, { name, namespace, count: 1, first: now, last: now.getTime() });
      return name;
    } catch (err) {
      this.opts.onError?.(
        `event ${reason} on ${obj.kind} ${namespace}/${obj.name}: ${describeError(err)}`,
        verb,
      );
      return undefined;
    }
  }

  private touch(key: string, s: Seen): void {
    this.seen.delete(key);
    this.seen.set(key, s);
    const max = this.opts.maxKeys ?? 4096;
    while (this.seen.size > max) {
      const oldest = this.seen.keys().next().value;
      if (oldest === undefined) break;
      this.seen.delete(oldest);
    }
  }
}
