import type { Readable } from "node:stream";

/**
 * Calls `onGone` once when `input` ends: the daemon holds the write end of
 * its engines' stdin and never writes, so EOF (or an error) there means the
 * daemon has exited, however it died; the kernel closes the pipe even after
 * SIGKILL. Returns a function that stops watching and lets go of `input`, so
 * the engine can exit normally after a clean stop.
 */
export function watchParentPipe(input: Readable, onGone: () => void): () => void {
  let isDone = false;
  const gone = () => {
    if (isDone) return;
    isDone = true;
    onGone();
  };
  const discard = () => undefined; // nothing is ever written; reading is only how EOF is seen
  input.on("data", discard);
  input.once("end", gone);
  input.once("close", gone);
  input.once("error", gone);
  return () => {
    isDone = true;
    input.off("data", discard);
    input.destroy();
  };
}
