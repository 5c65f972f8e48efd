import { readFile, stat } from "node:fs/promises";
import { CliError } from "./errors.ts";

/**
 * Image files named in a prompt, as `docker model run` finds them: a path
 * that starts with `/`, `./`, `\` or a drive letter and ends in an image
 * extension (`/tmp/cat.png`, `./photos/dog.JPG`, `C:\pics\a.jpeg`),
 * shell-escaped characters (`\ `, `\(`…) allowed. Each file that exists is
 * read and its path taken out of the prompt; a path that does not exist is
 * left in as text (it may not have been meant as a file). The images go to
 * the daemon as Ollama `images` (base64); it checks them.
 */
const IMAGE_PATH = /(?:[a-zA-Z]:[/\\]|[/\\]|\.\/)(?:\\.|[^\s\\])*?\.(?:jpe?g|png|webp|gif|bmp)\b/gi;

/** A larger image could not fit the daemon's 10 MiB request body once base64-encoded. */
export const MAX_PROMPT_IMAGE_BYTES = 7 * 1024 * 1024;

/** `\ ` → ` `, `\(` → `(` and so on: the path as the shell would have passed it. */
export const unescapePath = (path: string) => path.replace(/\\([ ()[\]{}$&;'\\*?~])/g, "$1");

export interface PromptWithImages {
  /** The prompt with the image paths taken out, trimmed. */
  text: string;
  /** The images' bytes in base64, in the order they appear. */
  images: string[];
}

/** Finds, reads and takes out the image files a prompt names (see the module comment). */
export async function imagesInPrompt(prompt: string): Promise<PromptWithImages> {
  let text = prompt;
  const images: string[] = [];
  for (const written of prompt.match(IMAGE_PATH) ?? []) {
    const path = unescapePath(written);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR") continue;
      throw new CliError(`cannot read the image ${path}: ${(error as Error).message}`);
    }
    if (size > MAX_PROMPT_IMAGE_BYTES) {
      throw new CliError(`the image ${path} is ${Math.round(size / 1024 / 1024)} MiB; at most ${MAX_PROMPT_IMAGE_BYTES / 1024 / 1024} MiB can be sent`);
    }
    const bytes = await readFile(path).catch((error: unknown) => {
      throw new CliError(`cannot read the image ${path}: ${(error as Error).message}`);
    });
    images.push(bytes.toString("base64"));
    for (const form of [`'${path}'`, `'${written}'`, written, path]) text = text.split(form).join("");
  }
  return { text: text.trim(), images };
}
