import { rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeTinyModel, type TinyModelOptions } from "../../src/distribution/tiny-model.ts";

const made: string[] = [];
// Removed when the test file's process exits, not in a hook: node:test runs an
// `after` registered inside a `before` hook as soon as that hook ends.
process.once("exit", () => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});

/** A temp directory removed when the test file ends. */
export async function tempDir(prefix = "mr-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Writes a tiny GGUF into a temp directory and returns its path. */
export async function tinyModel(options: TinyModelOptions = {}, fileName = "tiny.gguf"): Promise<string> {
  const path = join(await tempDir(), fileName);
  await writeTinyModel(path, options);
  return path;
}
