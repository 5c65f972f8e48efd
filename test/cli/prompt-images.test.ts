import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { imagesInPrompt } from "../../src/cli/prompt-images.ts";
import { tempDir } from "../helpers/models.ts";
import { CHECKERBOARD_PNG, GRADIENT_PNG } from "../helpers/png.ts";

test("image files named in a prompt are read and taken out of it, as docker model run does", async () => {
  const dir = await tempDir();
  const a = join(dir, "cat.png");
  const b = join(dir, "my dog.JPG");
  await writeFile(a, CHECKERBOARD_PNG);
  await writeFile(b, GRADIENT_PNG);
  const found = await imagesInPrompt(`describe '${a}' and ${b.replace(" ", "\\ ")} please`);
  assert.deepEqual(found.images, [CHECKERBOARD_PNG.toString("base64"), GRADIENT_PNG.toString("base64")]);
  assert.equal(found.text, "describe  and  please");
  const plain = await imagesInPrompt(`what is in ${a}?`);
  assert.deepEqual(plain.images, [CHECKERBOARD_PNG.toString("base64")]);
  assert.equal(plain.text, "what is in ?");
});

test("paths that are not files stay in the prompt; text without paths is unchanged", async () => {
  assert.deepEqual(await imagesInPrompt("compare /no/such/file.png with ./missing.jpg"), { text: "compare /no/such/file.png with ./missing.jpg", images: [] });
  assert.deepEqual(await imagesInPrompt("  a photo.png of a cat  "), { text: "a photo.png of a cat", images: [] });
});
