import { test } from "node:test";
import assert from "node:assert/strict";
import { formatBytes } from "../src/format-bytes.ts";
import { formatBytes as cliFormatBytes } from "../src/cli/output.ts";
import { formatBytes as schedulingFormatBytes } from "../src/scheduling/index.ts";

test("one byte formatter, IEC units, for every layer", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.50 KiB");
  assert.equal(formatBytes(30 * 1024 * 1024), "30.0 MiB");
  assert.equal(formatBytes(5 * 1024 ** 3), "5.00 GiB");
  assert.equal(formatBytes(-1), "-");
  assert.equal(formatBytes(361_821_056, { compact: true }), "345.06MiB", "the artifact config's size field keeps its shape");
  assert.equal(cliFormatBytes, formatBytes);
  assert.equal(schedulingFormatBytes, formatBytes);
});
