import { MediaTypes, type ModelDistribution } from "../distribution/index.ts";
import type { Scheduler } from "../scheduling/index.ts";

/**
 * DMR's runtime memory check before `POST /models/create` pulls: the model's
 * manifest and config (a few KiB, no weights) give its GGUF size and
 * metadata, and a model that could never fit the memory budget is a 507
 * (PullWouldNotFitError) before anything is downloaded. As in DMR, a model
 * the check cannot estimate (the registry does not answer, no GGUF files)
 * is pulled: the pull itself then says what is wrong, or the load does.
 */
export async function checkPullFits(
  deps: { distribution: ModelDistribution; scheduler: Pick<Scheduler, "checkPullFits"> },
  from: string,
  opts: { bearerToken?: string; isInsecure?: boolean; signal: AbortSignal },
): Promise<void> {
  const remote = await deps.distribution.inspectRemote(from, opts).catch(() => null);
  if (remote === null) return;
  const weightsBytes = remote.files
    ? remote.files.filter((f) => f.kind === "gguf").reduce((n, f) => n + f.size, 0)
    : remote.layers.filter((l) => l.mediaType === MediaTypes.gguf).reduce((n, l) => n + l.size, 0);
  if (weightsBytes === 0) return;
  deps.scheduler.checkPullFits(from, { weightsBytes, contextSize: remote.config.context_size ?? null, gguf: remote.config.gguf ?? {} });
}
