// The agent in static mode: policies and the topology come from manifest files instead of the API
// server (the lab, air-gapped tests). SIGHUP re-reads the files; a bad file keeps the last good state.
import { writeFileSync } from "node:fs";
import { classifyObjects } from "../api/objects.ts";
import { openFlowEvents } from "../datapath/events.ts";
import { describeMigration } from "../datapath/migrate.ts";
import type { AttachMode } from "../datapath/kernel/links.ts";
import { loadDatapath } from "../datapath/kernel/programs.ts";
import { loadManifests } from "../manifests/load.ts";
import { Enforcer, type EnforceResult } from "./enforcer.ts";
import { type EventSampling, writeEventSampling } from "./event-config.ts";
import { type InterfaceResolver, RouteInterfaceResolver } from "./host-interfaces.ts";
import { nodeAddresses } from "./node-addresses.ts";
import type { AllowLocalhost } from "../policy/index.ts";

export interface StaticAgentOptions {
  files: string[];
  node: string;
  pinRoot: string;
  objectPath?: string;
  attachMode?: AttachMode | "auto";
  readyFile?: string;
  resolver?: InterfaceResolver;
  // Flow events to this sink (JSON lines), sampled as configured.
  onEvent?: (line: string) => void;
  sampling: EventSampling;
  log?: (line: string) => void;
  // Whether the node reaches its own pods whatever the policies say (default "always"; see
  // CompileOptions.allowLocalhost).
  allowLocalhost?: AllowLocalhost;
  // The node's own addresses (identity host); default: this network namespace's, read at every reload.
  hostAddresses?: () => readonly string[];
}

export class StaticAgent {
  readonly #o: StaticAgentOptions;
  readonly #enforcer: Enforcer;
  readonly #log: (line: string) => void;
  #stopEvents?: () => void;

  private constructor(o: StaticAgentOptions, enforcer: Enforcer) {
    this.#o = o;
    this.#enforcer = enforcer;
    this.#log = o.log ?? ((l) => process.stderr.write(`${l}\n`));
  }

  static async start(o: StaticAgentOptions): Promise<StaticAgent> {
    const dp = loadDatapath({ pinRoot: o.pinRoot, objectPath: o.objectPath, attachMode: o.attachMode });
    writeEventSampling(dp, o.sampling);
    const agent = new StaticAgent(
      o,
      new Enforcer(dp, {
        node: o.node,
        pinRoot: o.pinRoot,
        resolver: o.resolver ?? new RouteInterfaceResolver(),
        allowLocalhost: o.allowLocalhost,
        hostAddresses: o.hostAddresses ?? (() => nodeAddresses()),
      }),
    );
    try {
      const result = await agent.reload();
      if (!result) throw new Error("the manifests could not be loaded; nothing was written");
      if (o.onEvent) {
        const sink = o.onEvent;
        const stream = openFlowEvents(dp.addon, dp.maps.eventsFd);
        stream.on("events", (batch) => {
          for (const e of batch)
            sink(JSON.stringify(e, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
        });
        agent.#stopEvents = () => stream.stop();
      }
      if (o.readyFile)
        writeFileSync(o.readyFile, JSON.stringify({ endpoints: result.endpoints, pending: result.pending }));
    } catch (e) {
      agent.close();
      throw e;
    }
    return agent;
  }

  // Re-reads the files and applies them. Returns undefined (and keeps the enforced state) on bad input.
  async reload(): Promise<EnforceResult | undefined> {
    const { documents, errors } = loadManifests(this.#o.files);
    if (errors.length > 0) {
      for (const e of errors) this.#log(`${e.path}:${e.line}: ${e.message}`);
      this.#log("manifests rejected: keeping the last good state");
      return undefined;
    }
    const result = await this.#enforcer.apply(classifyObjects(documents.map((d) => d.object)));
    for (const e of result.errors)
      this.#log(`policy error: ${e.policies.join(", ")}: ${e.field ? `${e.field}: ` : ""}${e.message}`);
    const s = result.sync;
    this.#log(
      `enforcing ${result.endpoints} endpoints (pending ${result.pending.length}): policy +${s.policyWritten}/-${s.policyDeleted}, ` +
        `flips ${s.flips}, ipcache +${s.ipcacheWritten}/-${s.ipcacheDeleted} in ${s.durationMs.toFixed(1)} ms`,
    );
    if (result.migrated) this.#log(describeMigration(result.migrated));
    if (result.migrationError) this.#log(result.migrationError);
    return result;
  }

  // Closes this process's handles. Pinned maps and links stay: the datapath keeps enforcing.
  close(): void {
    this.#stopEvents?.();
    this.#enforcer.datapath.close();
  }
}
