// Lets processes in a lab node's network namespace reach the API server on the host's loopback.
// Loopback is per network namespace, but a unix socket is a path: the host side listens on a unix
// socket and dials the API server; inside the node's namespace a child listens on the same
// 127.0.0.1:port the kubeconfig names and dials the unix socket. TLS passes through untouched.
//
// Run inside a namespace: node api-bridge.ts <listen host:port> <unix socket path>
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { fileURLToPath } from "node:url";

function pipe(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  // An orderly close is passed on by pipe() as end(), after the bytes still queued for the other
  // side; only an error tears both down at once. (Destroying the other side on "close" dropped the
  // tail of a response the API server sent just before closing its connection: a client listing
  // 50,000 pods through the bridge saw "aborted" on most attempts, test/scale.)
  const abort = () => {
    a.destroy();
    b.destroy();
  };
  a.on("error", abort);
  b.on("error", abort);
  a.on("close", (hadError) => (hadError ? b.destroy() : b.end()));
  b.on("close", (hadError) => (hadError ? a.destroy() : a.end()));
}

// Host side: unix socket → TCP target.
export function bridgeUnixToTcp(socketPath: string, host: string, port: number): Promise<Server> {
  const server = createServer((client) => pipe(client, createConnection({ host, port })));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => resolve(server));
  });
}

// Namespace side: TCP listener → unix socket.
export function bridgeTcpToUnix(host: string, port: number, socketPath: string): Promise<Server> {
  const server = createServer((client) => pipe(client, createConnection({ path: socketPath })));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}

export const API_BRIDGE_SCRIPT = fileURLToPath(import.meta.url);

if (process.argv[1] === API_BRIDGE_SCRIPT) {
  const [listen, socketPath] = process.argv.slice(2);
  const i = listen?.lastIndexOf(":") ?? -1;
  if (!listen || !socketPath || i < 0) {
    process.stderr.write("usage: api-bridge.ts <listen host:port> <unix socket path>\n");
    process.exit(2);
  }
  await bridgeTcpToUnix(listen.slice(0, i), Number(listen.slice(i + 1)), socketPath);
  process.stdout.write("ready\n");
}
