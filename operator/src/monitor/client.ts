// Reads one agent's monitor stream (GET /v1/flows, NDJSON) and its rule counters (GET /v1/rules, JSON)
// over whatever reaches the agent: a unix socket (the lab) or a byte stream the API server's
// port-forward carries (a cluster, targets.ts).
import { type IncomingMessage, request } from "node:http";
import { createInterface } from "node:readline";
import type { Duplex } from "node:stream";
import type { RulesRecord } from "../stats/rule-stats.ts";
import type { MonitorRecord } from "./flow-record.ts";

// How to reach one agent's monitor server.
export type MonitorConnection = { socketPath: string } | { connect: () => Duplex };

export interface MonitorTarget {
  node: string;
  // For messages: "unix:/run/...", "sluice-system/sluice-agent-x7k2p:9964".
  via: string;
  connection: MonitorConnection;
}

// The records of GET /v1/flows?<query>, until the agent ends the stream (or `signal` aborts it). An
// answer other than 200 is an error with the agent's message.
export async function* readFlows(
  target: MonitorTarget,
  query: URLSearchParams,
  signal?: AbortSignal,
): AsyncGenerator<MonitorRecord> {
  const res = await get(target, `/v1/flows?${query}`, "application/x-ndjson", signal);
  const lines = createInterface({ input: res, crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    if (line.trim() === "") continue;
    yield JSON.parse(line) as MonitorRecord;
  }
}

// The agent's per-rule counters (GET /v1/rules).
export async function readRules(target: MonitorTarget, signal?: AbortSignal): Promise<RulesRecord> {
  const res = await get(target, "/v1/rules", "application/json", signal);
  let body = "";
  for await (const chunk of res) body += String(chunk);
  return JSON.parse(body) as RulesRecord;
}

async function get(
  target: MonitorTarget,
  path: string,
  accept: string,
  signal?: AbortSignal,
): Promise<IncomingMessage> {
  const c = target.connection;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({
      path,
      headers: { host: "localhost", accept },
      signal,
      ...("socketPath" in c
        ? { socketPath: c.socketPath }
        : { createConnection: () => c.connect() as never }),
    });
    req.on("response", resolve);
    req.on("error", reject);
    req.end();
  });
  if (res.statusCode !== 200) {
    let body = "";
    for await (const chunk of res) body += String(chunk);
    throw new Error(`${target.via}: ${res.statusCode} ${body.trim()}`);
  }
  return res;
}
