import type { Command } from "./context.ts";
import { sseEvents } from "./client.ts";
import { UsageError } from "./errors.ts";
import { json } from "./output.ts";

export const requestsCommand: Command = {
  name: "requests",
  summary: "Print the recorded requests and responses",
  usage: "mr requests [OPTIONS]",
  description:
    "As `docker model requests`: the last requests the daemon served per model, each with its response (a streamed one\nassembled into its final JSON), from GET /engines/requests. With -f it follows: one JSON line per request as it\ncompletes, in the route's shape, until Ctrl-C. The daemon keeps none with MODEL_RUNNER_RECORD_REQUESTS=0.",
  examples: ["mr requests", "mr requests --model ai/smollm2", "mr requests -f", "mr requests -f --include-existing | jq -c '.[0].records[0].response'"],
  maxArgs: 0,
  flags: {
    follow: { type: "boolean", short: "f", description: "keep printing requests as they complete until Ctrl-C" },
    "include-existing": { type: "boolean", description: "with --follow: print the requests already recorded first" },
    model: { type: "string", valueName: "MODEL", description: "only this model's requests" },
  },
  async run(cli, { values }) {
    if (values["include-existing"] && !values.follow) throw new UsageError("--include-existing works only with --follow", "requests");
    const model = typeof values.model === "string" ? values.model : undefined;
    if (model !== undefined && model.trim() === "") throw new UsageError("--model needs a model name", "requests");
    const client = await cli.daemon();
    if (!values.follow) {
      const groups = await client.json<unknown[]>("GET", "/engines/requests", { query: { model }, signal: cli.signal });
      cli.io.stdout.write(json(groups ?? []));
      return 0;
    }
    const res = await client.request("GET", "/engines/requests", {
      query: { model, include_existing: values["include-existing"] ? "true" : undefined },
      headers: { accept: "text/event-stream" },
      signal: cli.signal,
    });
    try {
      for await (const { event, data } of sseEvents(res)) {
        if (event === "new_request" || event === "existing_request") cli.io.stdout.write(`${data}\n`);
      }
    } catch (error) {
      if (cli.signal.aborted) throw cli.signal.reason;
      throw error;
    }
    return 0;
  },
};
