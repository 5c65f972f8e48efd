import type { Dispatcher, Pool } from "undici";

// undici is loaded with the first engine's pool: an idle daemon with no model
// loaded does without it (~9 MiB of RSS).
let undici: Promise<typeof import("undici")> | null = null;

/**
 * Keep-alive connection pools to engine sockets, one per socket path. A pool
 * is closed when its runner goes away (`forget`) or the daemon stops.
 */
export class EngineClients {
  private readonly pools = new Map<string, Pool>();

  /** Sends one request to the engine on `socketPath`; the body streams back. */
  async request(socketPath: string, options: Omit<Dispatcher.RequestOptions, "origin">): Promise<Dispatcher.ResponseData> {
    return (this.pools.get(socketPath) ?? (await this.open(socketPath))).request(options);
  }

  private async open(socketPath: string): Promise<Pool> {
    const { Pool } = await (undici ??= import("undici"));
    // Another request may have opened it while undici loaded.
    let pool = this.pools.get(socketPath);
    if (!pool) {
      // Each engine decodes at most its parallel slots at once; a few extra
      // connections keep queued requests from paying for a new handshake.
      pool = new Pool("http://engine", { socketPath, connections: 64, keepAliveTimeout: 30_000, headersTimeout: 0, bodyTimeout: 0 });
      this.pools.set(socketPath, pool);
    }
    return pool;
  }

  /** Closes the pool of a socket whose engine is gone. */
  forget(socketPath: string): void {
    const pool = this.pools.get(socketPath);
    if (!pool) return;
    this.pools.delete(socketPath);
    void pool.destroy().catch(() => undefined);
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
  }
}
