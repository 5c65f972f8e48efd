import { readFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { createServer, type Server } from "node:tls";
import { ConfigError, type DaemonTlsListener } from "../config.ts";

/** The running TLS listener: its URL, and how to stop it. */
export interface TlsListener {
  /** `https://host:port` it listens on. */
  url: string;
  /** Stops taking connections now; resolves once the last one has ended (destroyAll ends them). */
  close(): Promise<void>;
  /** Ends the connections it still has (after the daemon's grace period). */
  destroyAll(): void;
}

/**
 * DMR's TLS listener (MODEL_RUNNER_TLS_*), beside the plain one: a TLS
 * server whose decrypted connections are handed to `accept`, the same
 * place as plain ones (the fast lane, then Node's HTTP server), so every
 * route answers on both. A certificate or key that cannot be read, or that
 * is not PEM, stops the start with a ConfigError naming the variable.
 */
export async function listenTls(settings: DaemonTlsListener, host: string, accept: (socket: Socket) => void): Promise<TlsListener> {
  const read = async (path: string, variable: string) => {
    try {
      return await readFile(path);
    } catch (error) {
      throw new ConfigError(`${variable}: cannot read ${path}: ${(error as Error).message}`);
    }
  };
  const [cert, key] = [await read(settings.certPath, "MODEL_RUNNER_TLS_CERT"), await read(settings.keyPath, "MODEL_RUNNER_TLS_KEY")];
  let server: Server;
  try {
    server = createServer({ cert, key });
  } catch (error) {
    throw new ConfigError(`MODEL_RUNNER_TLS_CERT and MODEL_RUNNER_TLS_KEY must be a PEM certificate and its key: ${(error as Error).message}`);
  }
  const sockets = new Set<Socket>();
  server.on("secureConnection", (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    accept(socket);
  });
  // A client that fails the handshake (plain HTTP to this port, a certificate it refuses) just loses its connection.
  server.on("tlsClientError", () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(settings.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : settings.port;
  return {
    url: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    destroyAll() {
      for (const socket of sockets) socket.destroy();
    },
  };
}
