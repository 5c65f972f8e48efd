import { checkInsecureAllowed, parseReference } from "../distribution/index.ts";
import { optionalBoolean } from "../http/fields.ts";

/**
 * A pull or push body's `insecure` (Ollama's field, and ours on DMR's pull
 * and push routes): plain HTTP to the reference's registry. Checked before
 * the first progress line: a bad name or a non-boolean is a 400, and so is
 * `insecure` for hf.co, which is always HTTPS.
 */
export function insecureFieldOf(ref: string, body: unknown): boolean {
  const parsed = parseReference(ref);
  const isInsecure = optionalBoolean((body as { insecure?: unknown } | undefined)?.insecure, "insecure") === true;
  if (isInsecure) checkInsecureAllowed(parsed);
  return isInsecure;
}
