import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import Fastify from "fastify";
import { streamProgressLines } from "../../src/api/progress-stream.ts";
import { installRequestSignal } from "../../src/api/request-signal.ts";

test("a quiet progress stream repeats its last line, so idle timeouts do not cut a long build", async () => {
  const app = Fastify();
  installRequestSignal(app);
  app.post("/work", async (request, reply) => {
    await streamProgressLines(
      reply,
      { contentType: "application/x-ndjson", encode: (l) => `${JSON.stringify(l)}\n`, logError: () => undefined, heartbeatMs: 40 },
      async (send) => {
        send({ type: "progress", message: "compiling: 10%" });
        await delay(300); // one long, silent step
        send({ type: "progress", message: "compiling: 90%" });
        return { type: "success", message: "done" };
      },
    );
    return reply;
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  try {
    const { port } = app.server.address() as { port: number };
    const res = await fetch(`http://127.0.0.1:${port}/work`, { method: "POST" });
    const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l) as { type: string; message: string });
    const repeats = lines.filter((l) => l.message === "compiling: 10%").length;
    assert.ok(repeats >= 3, `the quiet step was kept alive (${repeats} lines)`);
    assert.deepEqual(lines.slice(-2), [{ type: "progress", message: "compiling: 90%" }, { type: "success", message: "done" }]);
  } finally {
    await app.close();
  }
});
