// What the lab sends to the prober it runs inside a pod, and what comes back.

export interface ProbeTarget {
  id: number;
  ip: string;
  port: number;
  protocol: "TCP" | "UDP";
  // The destination pod's key; its server answers with it.
  expectKey: string;
}

export interface ProbeRequest {
  probes: ProbeTarget[];
  tcpTimeoutMs: number;
  udpTimeoutMs: number;
  udpTries: number;
}

export interface ProbeOutcome {
  verdict: "allow" | "deny";
  // Why a verdict is not the plain one: refused, answered by another pod, a socket error.
  note?: string;
}

export interface ProbeResponse {
  results: Array<ProbeOutcome & { id: number }>;
}
