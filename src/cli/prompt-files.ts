import { readFile, stat } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { CliError } from "./errors.ts";
import { unescapePath } from "./prompt-images.ts";

/**
 * Files named with `@` in a prompt, as `docker model run` includes them:
 * `@notes.txt`, `@./src/main.ts`, `@/abs/path`, `@"a name with spaces.md"`,
 * `@'…'`, shell escapes (`@my\ notes.txt`) allowed. Unlike DMR, the `@`
 * must start a word (`me@example.com` is never read as a file).
 */
const FILE_REF = /(?<=^|[\s([{])@(?:"([^"]+)"|'([^']+)'|((?:\\.|[^\s"'\\])+))/g;

/** A larger file could not fit the daemon's 10 MiB request body with the rest of the prompt. */
export const MAX_PROMPT_FILE_BYTES = 8 * 1024 * 1024;

const IMAGE_EXTENSION = /\.(?:jpe?g|png|webp|gif|bmp)$/i;

/**
 * The prompt with each `@file` that names a readable file replaced by the
 * file's text. An image stays a path (without the `@`, written so that
 * imagesInPrompt finds it and sends it as an image). A reference that names
 * no file (`me@example.com`, a directory, a typo) stays as the user wrote it:
 * it may not have been meant as a file, and the model sees exactly that text.
 * A file too large for a request is an error naming it.
 */
export async function includeFiles(prompt: string): Promise<string> {
  let out = "";
  let last = 0;
  for (const match of prompt.matchAll(FILE_REF)) {
    const written = match[1] ?? match[2] ?? match[3]!;
    const path = match[3] !== undefined ? unescapePath(written) : written;
    let replacement = await fileText(path);
    // A bare name at the end of a sentence or in brackets (`see @notes.txt.`, `(@a.md)`): the punctuation is not the name's.
    const punctuation = match[3] !== undefined && replacement === null ? /[.,;:!?)\]}]+$/.exec(path)?.[0] : undefined;
    if (punctuation) {
      const text = await fileText(path.slice(0, -punctuation.length));
      if (text !== null) replacement = text + punctuation;
    }
    if (replacement === null) continue;
    out += prompt.slice(last, match.index) + replacement;
    last = match.index! + match[0].length;
  }
  return out + prompt.slice(last);
}

/** What `@path` becomes: the file's text, an image's path for imagesInPrompt, or null (left as written). */
async function fileText(path: string): Promise<string | null> {
  let size: number;
  try {
    const info = await stat(path);
    if (!info.isFile()) return null;
    size = info.size;
  } catch {
    return null;
  }
  if (IMAGE_EXTENSION.test(path)) {
    const explicit = isAbsolute(path) || path.startsWith("./") ? path : `./${path}`;
    return explicit.replace(/([ ()[\]{}$&;'\\*?~])/g, "\\$1");
  }
  if (size > MAX_PROMPT_FILE_BYTES) {
    throw new CliError(`@${path} is ${(size / 1024 / 1024).toFixed(1)} MiB; a prompt can include files up to ${MAX_PROMPT_FILE_BYTES / 1024 / 1024} MiB`);
  }
  try {
    return await readFile(path, "utf8");
  } catch {
    return null;
  }
}
