// What the lab asks the traffic sender (run inside the source pod) to do, and what it reports.

export interface UdpStreamSpec {
  // Identifies the stream at the receiving pod server.
  stream: string;
  ip: string;
  port: number;
  // Datagrams per second, sent at a steady pace.
  rate: number;
}

export interface TrafficSpec {
  durationMs: number;
  udp: UdpStreamSpec[];
  // A long TCP stream: one connection writing continuously at about bytesPerSecond.
  tcp?: { ip: string; port: number; bytesPerSecond: number };
}

export interface TrafficReport {
  udpSent: Record<string, number>;
  udpSendErrors: number;
  tcpBytes: number;
  // ECONNRESET, EPIPE, a close before the end...: any sign the connection did not survive.
  tcpError?: string;
  tcpConnected: boolean;
}
