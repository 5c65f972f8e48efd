import { chmod, rm, stat } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { ConfigError } from "../config.ts";

/** The running Unix socket listener, and how to stop it. */
export interface UnixListener {
  path: string;
  /** Stops taking connections now; resolves once the last one has ended (destroyAll ends them) and the file is gone. */
  close(): Promise<void>;
  /** Ends the connections it still has (after the daemon's grace period). */
  destroyAll(): void;
}

/**
 * DMR's MODEL_RUNNER_SOCK: the daemon's routes on a Unix socket, beside TCP
 * (`curl --unix-socket PATH http://localhost/models`). Its connections go to
 * `accept` as TCP ones do (the fast lane, then Node's server). A socket file
 * left by a daemon that died is replaced, as DMR does; anything else at the
 * path stops the start with a ConfigError naming it. Mode 0600: only this
 * user may connect, as only this user may start and stop the daemon.
 */
export async function listenUnix(path: string, accept: (socket: Socket) => void): Promise<UnixListener> {
  const existing = await stat(path).catch(() => null);
  if (existing && !existing.isSocket()) throw new ConfigError(`MODEL_RUNNER_SOCK: ${path} exists and is not a socket`);
  if (existing) await rm(path, { force: true });
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    accept(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) => reject(new ConfigError(`MODEL_RUNNER_SOCK: cannot listen on ${path}: ${error.message}`)));
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return {
    path,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(path, { force: true });
    },
    destroyAll() {
      for (const socket of sockets) socket.destroy();
    },
  };
}
