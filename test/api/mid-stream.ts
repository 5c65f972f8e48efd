import type { TinyModelOptions } from "../../src/distribution/tiny-model.ts";
import type { TestDaemon } from "./daemon-helper.ts";

/** A generated model slow enough (a few ms per token) that a stream is surely still running when its engine is killed. */
export const SLOW_MODEL: TinyModelOptions = { seed: 6, embeddingLength: 384, blockCount: 6, feedForwardLength: 768, heads: 6 };

/**
 * Reads a streaming answer until `marker` has been seen, SIGKILLs the engine
 * serving it (its pid from `GET /engines/ps`), then reads the stream to its
 * end and returns all of its text.
 */
export async function killEngineMidStream(d: TestDaemon, res: Response, marker: string, headers: Record<string, string> = {}): Promise<string> {
  if (res.status !== 200) throw new Error(`stream answered ${res.status}: ${await res.text()}`);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes(marker)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the stream ended before ${marker}: ${text}`);
    text += value;
  }
  const runners = (await (await fetch(`${d.url}/engines/ps`, { headers })).json()) as Array<{ model_name: string; pid: number | null }>;
  const pid = runners.find((r) => r.model_name.includes("slow"))?.pid;
  if (!pid) throw new Error(`no pid for the slow model in ${JSON.stringify(runners)}`);
  process.kill(pid, "SIGKILL");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  return text;
}
