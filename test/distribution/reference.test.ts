import assert from "node:assert/strict";
import { test } from "node:test";
import { InvalidReferenceError, parseAnyReference, parseReference } from "../../src/distribution/index.ts";

test("repository names are capped at 255 characters, registry included, as DMR's parser does", () => {
  // docker.io/ai/ + name: 13 characters of prefix.
  const fits = `ai/${"m".repeat(255 - "docker.io/ai/".length)}`;
  assert.equal(parseReference(fits).repository, fits);
  const over = `ai/${"m".repeat(256 - "docker.io/ai/".length)}`;
  assert.throws(() => parseReference(over), (e) => e instanceof InvalidReferenceError && e.status === 400 && /256 characters.*at most 255/.test(e.message));
  assert.throws(() => parseReference(`registry.example.com/${"r".repeat(240)}:v1`), /at most 255/);
  assert.throws(() => parseAnyReference(`ai/${"x".repeat(300)}`), InvalidReferenceError);
  // The message quotes a long reference cut short.
  assert.throws(() => parseReference("a".repeat(5000)), (e) => (e as Error).message.length < 400);
});
