import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cp, mkdir, readdir, readFile, realpath, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { collect, runMr, type MrResult } from "../helpers/cli.ts";
import { tempDir } from "../helpers/models.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const COMPILED = "mr: running the compiled build in dist/";

test("the suite runs mr from the compiled build (scripts/run-tests.mjs builds dist/ when stale)", async () => {
  const r = await runMr(["--debug", "--help"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Usage: mr /);
  assert.ok(r.stderr.startsWith(COMPILED), `expected the compiled build; run 'npm run build' first.\n${r.stderr}`);
});

/** A copy of the package (its node_modules linked) that a test may edit and build. */
async function packageCopy(options: { withTypescript: boolean }): Promise<string> {
  const dir = await tempDir("mr-compiled-");
  for (const path of ["bin", "src", "scripts/build.mjs", "package.json", "tsconfig.json", "tsconfig.build.json"]) {
    await cp(join(ROOT, path), join(dir, path), { recursive: true });
  }
  const modules = await realpath(join(ROOT, "node_modules"));
  if (options.withTypescript) {
    await symlink(modules, join(dir, "node_modules"));
  } else {
    // What `npm ci --omit=dev` leaves: every package but the compiler.
    await mkdir(join(dir, "node_modules"));
    for (const name of await readdir(modules)) {
      if (name !== "typescript" && name !== ".bin") await symlink(join(modules, name), join(dir, "node_modules", name));
    }
  }
  return dir;
}

/** Runs the copy's scripts/build.mjs to completion. */
function build(dir: string): Promise<MrResult> {
  return collect(spawn(process.execPath, [join(dir, "scripts", "build.mjs")], { stdio: ["ignore", "pipe", "pipe"] }), 120_000);
}

/** The copy's `mr --debug --help`: stderr says which code ran, stdout is the usage text. */
async function mrHelp(dir: string): Promise<MrResult> {
  const child = spawn(process.execPath, [join(dir, "bin", "mr.js"), "--debug", "--help"], { stdio: ["ignore", "pipe", "pipe"] });
  const r = await collect(child, 60_000);
  assert.equal(r.code, 0, r.stderr);
  return r;
}

test("mr runs dist/ only while it matches src/: an edit runs the edited source until the next build", async () => {
  const dir = await packageCopy({ withTypescript: true });
  const before = await mrHelp(dir);
  assert.match(before.stderr, /running src\/ through tsx \(dist\/ has not been built;/);

  const built = await build(dir);
  assert.equal(built.code, 0, built.stderr);
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith("dist")), ["dist"], "no scratch folders are left");
  const compiled = await mrHelp(dir);
  assert.ok(compiled.stderr.startsWith(COMPILED), compiled.stderr);
  assert.equal(compiled.stdout, before.stdout, "the compiled build prints what the sources do");

  // An edit: the old build must not run; the edited source does.
  const mainTs = join(dir, "src", "cli", "main.ts");
  const original = await readFile(mainTs, "utf8");
  await writeFile(mainTs, original.replace("Run AI models locally.", "Run AI models locally (edited)."));
  const edited = await mrHelp(dir);
  assert.match(edited.stderr, /running src\/ through tsx \(src\/ changed since dist\/ was built;/);
  assert.match(edited.stdout, /Run AI models locally \(edited\)\./);

  // Undoing the edit makes the build match again.
  await writeFile(mainTs, original);
  assert.ok((await mrHelp(dir)).stderr.startsWith(COMPILED));

  // A new file counts too (and non-TypeScript files are copied into dist/).
  await writeFile(join(dir, "src", "cli", "note.txt"), "runtime data\n");
  assert.match((await mrHelp(dir)).stderr, /src\/ changed since dist\/ was built/);
  // A type error does not stop the build (npm run typecheck is the gate for types): tsx would run the same code.
  const typeError = 'export const notANumber: number = "x" as unknown as string;\n';
  await writeFile(mainTs, original.replace("Run AI models locally.", "Run AI models locally (edited).") + typeError);
  const withTypeError = await build(dir);
  assert.equal(withTypeError.code, 0, withTypeError.stderr);
  assert.match(withTypeError.stdout + withTypeError.stderr, /TS2322/);
  const rebuilt = await mrHelp(dir);
  assert.ok(rebuilt.stderr.startsWith(COMPILED), rebuilt.stderr);
  assert.match(rebuilt.stdout, /Run AI models locally \(edited\)\./);
  assert.equal(await readFile(join(dir, "dist", "cli", "note.txt"), "utf8"), "runtime data\n");
});

test("without typescript (dev dependencies omitted) the build is skipped and mr runs src/ through tsx", async () => {
  const dir = await packageCopy({ withTypescript: false });
  const built = await build(dir);
  assert.equal(built.code, 0, built.stderr);
  assert.match(built.stderr, /typescript is not installed/);
  await assert.rejects(readdir(join(dir, "dist")), { code: "ENOENT" });
  const r = await mrHelp(dir);
  assert.match(r.stderr, /running src\/ through tsx \(dist\/ has not been built;/);
  assert.match(r.stdout, /^Usage: mr /);
});
