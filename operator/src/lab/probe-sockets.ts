// The probe wire protocol's sockets, shared by the lab (pod-server.ts, pod-prober.ts run inside pod
// namespaces) and `sluice probe serve|connect` (in a cluster's pods). A TCP server greets every
// connection with its key and a newline; a UDP server answers a "P<token>" datagram with
// "<key> <token>", so a prober knows which server answered and which of its probes the answer is for.
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from "node:dgram";
import { createServer, isIPv6, type Server, Socket } from "node:net";

export interface ListenOptions {
  // The address to bind; undefined binds every address, IPv4 and IPv6.
  host?: string;
  // Called after the greeting went out (the lab counts the bytes that follow).
  onConnection?: (sock: Socket) => void;
  // Datagrams that are not probes (the lab's sequence-numbered traffic streams).
  onDatagram?: (msg: Buffer, from: RemoteInfo, sock: UdpSocket) => void;
  recvBufferSize?: number;
}

// A kernel booted with ipv6.disable=1 has no IPv6 sockets at all: every address then means IPv4's.
function noIPv6(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === "EAFNOSUPPORT";
}

export async function listenTcp(key: string, port: number, opts: ListenOptions = {}): Promise<Server> {
  const server = createServer((sock) => {
    sock.write(`${key}\n`);
    opts.onConnection?.(sock);
  });
  const listen = (o: { host: string; ipv6Only?: boolean }) =>
    new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ port, ...o }, () => resolve());
    });
  if (opts.host !== undefined) await listen({ host: opts.host });
  else
    await listen({ host: "::", ipv6Only: false }).catch((err: unknown) => {
      if (!noIPv6(err)) throw err;
      return listen({ host: "0.0.0.0" });
    });
  return server;
}

export async function listenUdp(key: string, port: number, opts: ListenOptions = {}): Promise<UdpSocket> {
  const bind = async (address: string): Promise<UdpSocket> => {
    const sock = createSocket({
      type: isIPv6(address) ? "udp6" : "udp4",
      ipv6Only: false,
      ...(opts.recvBufferSize ? { recvBufferSize: opts.recvBufferSize } : {}),
    });
    sock.on("message", (msg, rinfo) => {
      if (msg[0] === 0x50 /* P: probe */)
        sock.send(`${key} ${msg.subarray(1).toString()}`, rinfo.port, rinfo.address);
      else opts.onDatagram?.(msg, rinfo, sock);
    });
    let bound = false;
    await new Promise<void>((resolve, reject) => {
      // Once bound, an error (a send that failed) is the peer's business: the server stays up.
      sock.once("error", (err) => {
        if (bound) return;
        sock.close();
        reject(err);
      });
      sock.bind({ port, address }, () => {
        bound = true;
        resolve();
      });
    });
    return sock;
  };
  if (opts.host !== undefined) return bind(opts.host);
  return bind("::").catch((err: unknown) => {
    if (!noIPv6(err)) throw err;
    return bind("0.0.0.0");
  });
}

// open: the handshake (TCP) or an answer (UDP) came back; refused: a RST or an ICMP port
// unreachable came back, so packets passed both ways but nothing listened; blocked: nothing came
// back in time (policy drops are silent) or the socket failed (error says how).
export type ProbeResult =
  | { result: "open"; ms: number; answer?: string }
  | { result: "refused"; ms: number }
  | { result: "blocked"; ms: number; error?: string };

export interface TcpProbeOptions {
  timeoutMs: number;
  // "required": open only once the greeting line arrived (the lab, whose servers always greet);
  // a number: open on the handshake, then wait up to that many ms for a greeting to report.
  greeting: "required" | number;
}

export function probeTcp(ip: string, port: number, opts: TcpProbeOptions): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const sock = new Socket();
    let buf = "";
    let connectedMs: number | undefined;
    let settled = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const finish = (r: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(graceTimer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => {
      if (connectedMs !== undefined) finish({ result: "open", ms: connectedMs });
      else finish({ result: "blocked", ms: performance.now() - t0 });
    }, opts.timeoutMs);
    sock.on("connect", () => {
      if (opts.greeting === "required") return;
      connectedMs = performance.now() - t0;
      const ms = connectedMs;
      graceTimer = setTimeout(() => finish({ result: "open", ms }), opts.greeting);
    });
    sock.on("data", (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      finish({ result: "open", ms: connectedMs ?? performance.now() - t0, answer: buf.slice(0, nl) });
    });
    // A server that closes without greeting still accepted the connection.
    sock.on("end", () => {
      if (connectedMs !== undefined) finish({ result: "open", ms: connectedMs });
    });
    sock.on("error", (err: NodeJS.ErrnoException) => {
      const ms = performance.now() - t0;
      if (err.code === "ECONNREFUSED") finish({ result: "refused", ms });
      else if (connectedMs !== undefined) finish({ result: "open", ms: connectedMs });
      else finish({ result: "blocked", ms, error: err.code ?? err.message });
    });
    sock.connect({ host: ip, port });
  });
}

export interface UdpProbeOptions {
  // Per try: a datagram is resent after this long without an answer, up to `tries` datagrams.
  timeoutMs: number;
  tries: number;
  // Matches the answer to this probe (a late answer to an earlier probe carries another token).
  token: string;
  // Connects the socket, so the kernel reports an ICMP port unreachable as ECONNREFUSED ("refused");
  // an unconnected socket never sees it, and a closed port looks blocked.
  connected?: boolean;
}

export function probeUdp(ip: string, port: number, opts: UdpProbeOptions): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const sock = createSocket(isIPv6(ip) ? "udp6" : "udp4");
    let settled = false;
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = (r: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.close();
      resolve(r);
    };
    const send = () => {
      if (sent === opts.tries) return finish({ result: "blocked", ms: performance.now() - t0 });
      sent++;
      const onSent = (err: Error | null) => {
        if (err) sock.emit("error", err);
      };
      if (opts.connected) sock.send(`P${opts.token}`, onSent);
      else sock.send(`P${opts.token}`, port, ip, onSent);
      timer = setTimeout(send, opts.timeoutMs);
    };
    sock.on("message", (msg) => {
      const text = msg.toString();
      if (!text.endsWith(` ${opts.token}`)) return; // a late answer to another probe
      finish({ result: "open", ms: performance.now() - t0, answer: text.slice(0, -opts.token.length - 1) });
    });
    sock.on("error", (err: NodeJS.ErrnoException) => {
      const ms = performance.now() - t0;
      if (err.code === "ECONNREFUSED") finish({ result: "refused", ms });
      else finish({ result: "blocked", ms, error: err.code ?? err.message });
    });
    if (opts.connected) sock.connect(port, ip, send);
    else sock.bind(0, send);
  });
}

// The sink side of the lab's live traffic: sequence-numbered datagrams "S<stream>:<seq>" counted per
// (port, stream), each distinct seq once, so a duplicate never hides a loss. Used by the lab's pod
// server and by `sluice probe serve` in a cluster's pods.
export class StreamCounter {
  readonly #streams = new Map<string, Set<number>>();

  /** Counts msg when it is a stream datagram; false for anything else. */
  count(port: number, msg: Buffer): boolean {
    if (msg[0] !== 0x53 /* S: stream */) return false;
    const text = msg.subarray(1).toString();
    const colon = text.indexOf(":");
    const id = `${port}/${text.slice(0, colon)}`;
    let seqs = this.#streams.get(id);
    if (!seqs) {
      seqs = new Set();
      this.#streams.set(id, seqs);
    }
    seqs.add(Number(text.slice(colon + 1)));
    return true;
  }

  /** Distinct datagrams received, by "<port>/<stream>". */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [id, seqs] of this.#streams) out[id] = seqs.size;
    return out;
  }

  clear(): void {
    this.#streams.clear();
  }
}
