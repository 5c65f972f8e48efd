import assert from "node:assert/strict";
import { mkdir, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { includeFiles, MAX_PROMPT_FILE_BYTES } from "../../src/cli/prompt-files.ts";
import { imagesInPrompt } from "../../src/cli/prompt-images.ts";
import { tempDir } from "../helpers/models.ts";
import { CHECKERBOARD_PNG } from "../helpers/png.ts";

test("@file is replaced by the file's text, as docker model run does: bare, quoted and shell-escaped paths", async () => {
  const dir = await tempDir();
  const notes = join(dir, "notes.txt");
  const spaced = join(dir, "my notes (v2).md");
  await writeFile(notes, "alpha beta");
  await writeFile(spaced, "gamma");
  assert.equal(await includeFiles(`summarize @${notes} now`), "summarize alpha beta now");
  assert.equal(await includeFiles(`@"${spaced}" and @'${notes}'`), "gamma and alpha beta");
  assert.equal(await includeFiles(`read @${spaced.replace(/([ ()])/g, "\\$1")}`), "read gamma");
  assert.equal(await includeFiles(`@${notes}\n@${notes}`), "alpha beta\nalpha beta", "every reference");
});

test("@ that names no file stays as written (addresses, directories, typos); a file too large is an error naming it", async () => {
  const dir = await tempDir();
  const text = "mail me@example.com about @/no/such/file and @" + dir;
  assert.equal(await includeFiles(text), text);
  await writeFile(join(dir, "example.com"), "not this");
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    assert.equal(await includeFiles("mail me@example.com"), "mail me@example.com", "an @ inside a word is not a file reference");
    assert.equal(await includeFiles("(@example.com)"), "(not this)");
    assert.equal(await includeFiles("read @example.com."), "read not this.", "a sentence's full stop is not the name's");
  } finally {
    process.chdir(cwd);
  }
  assert.equal(await includeFiles("no references at all"), "no references at all");
  const big = join(dir, "big.log");
  await writeFile(big, "");
  await truncate(big, MAX_PROMPT_FILE_BYTES + 1);
  await assert.rejects(includeFiles(`look at @${big}`), /@.*big\.log is 8\.0 MiB; a prompt can include files up to 8 MiB/);
});

test("@image stays a path that imagesInPrompt sends as an image, even relative or with spaces", async () => {
  const dir = await tempDir();
  await mkdir(join(dir, "pics"));
  const cat = join(dir, "pics", "a cat.png");
  await writeFile(cat, CHECKERBOARD_PNG);
  const absolute = await imagesInPrompt(await includeFiles(`what is in @"${cat}"?`));
  assert.deepEqual(absolute.images, [CHECKERBOARD_PNG.toString("base64")]);
  assert.equal(absolute.text, "what is in ?");
  const cwd = process.cwd();
  process.chdir(join(dir, "pics"));
  try {
    const relative = await imagesInPrompt(await includeFiles("describe @'a cat.png'"));
    assert.deepEqual(relative.images, [CHECKERBOARD_PNG.toString("base64")]);
    assert.equal(relative.text, "describe");
  } finally {
    process.chdir(cwd);
  }
});
