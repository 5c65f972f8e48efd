/**
 * Stored responses (`store: true`, the default), for retrieval, input_items
 * and `previous_response_id` chaining. In memory, per daemon: entries expire
 * after `ttlMs` and the oldest go first once `maxEntries` or `maxBytes` would
 * be exceeded, so a busy daemon cannot grow without bound.
 */
export interface StoredResponse {
  /** The response object as the API returns it. */
  response: Record<string, unknown>;
  /** The input items of this turn, with ids (`GET .../input_items`). */
  inputItems: Array<Record<string, unknown>>;
  /** The whole conversation in engine (chat) messages, output included, for chaining. */
  messages: Array<Record<string, unknown>>;
}

export interface ResponseStoreOptions {
  ttlMs?: number;
  maxEntries?: number;
  maxBytes?: number;
  now?: () => number;
}

export const DEFAULT_RESPONSE_TTL_MS = 60 * 60 * 1000;

export class ResponseStore {
  private readonly entries = new Map<string, { value: StoredResponse; expiresAtMs: number; bytes: number }>();
  private bytes = 0;
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly now: () => number;

  constructor(options: ResponseStoreOptions = {}) {
    this.ttlMs = options.ttlMs ?? DEFAULT_RESPONSE_TTL_MS;
    this.maxEntries = options.maxEntries ?? 1000;
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.now = options.now ?? Date.now;
  }

  put(id: string, value: StoredResponse): void {
    this.sweep();
    this.delete(id);
    const bytes = JSON.stringify(value).length;
    if (bytes > this.maxBytes) return; // too big to keep at all; retrieval will 404
    // Map iteration is insertion order: the first entries are the oldest.
    for (const oldest of this.entries.keys()) {
      if (this.entries.size < this.maxEntries && this.bytes + bytes <= this.maxBytes) break;
      this.delete(oldest);
    }
    this.entries.set(id, { value, expiresAtMs: this.now() + this.ttlMs, bytes });
    this.bytes += bytes;
  }

  get(id: string): StoredResponse | null {
    const entry = this.entries.get(id);
    if (!entry) return null;
    if (entry.expiresAtMs <= this.now()) {
      this.delete(id);
      return null;
    }
    return entry.value;
  }

  delete(id: string): boolean {
    const entry = this.entries.get(id);
    if (!entry) return false;
    this.entries.delete(id);
    this.bytes -= entry.bytes;
    return true;
  }

  get size(): number {
    return this.entries.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, entry] of this.entries) if (entry.expiresAtMs <= now) this.delete(id);
  }
}
