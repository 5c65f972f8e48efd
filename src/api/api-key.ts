/**
 * Whether a request carries the daemon's API key: `Authorization: Bearer
 * <key>` (OpenAI's and Ollama's clients) or `x-api-key: <key>` (Anthropic's).
 * The one rule for Node's server (server.ts) and the fast lane.
 */
export function hasApiKey(authorization: string | undefined, xApiKey: string | string[] | undefined, key: string): boolean {
  return authorization === `Bearer ${key}` || xApiKey === key;
}
