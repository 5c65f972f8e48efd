import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { test } from "node:test";

/**
 * Every RunnerError subclass in src/ with its literal `code`, read from the
 * source so that unexported classes count too. A class without a literal
 * code (one set from an engine's answer) is left out.
 */
async function runnerErrorCodes(): Promise<Array<{ name: string; code: string | null; file: string }>> {
  const root = join(import.meta.dirname, "..", "src");
  const files: string[] = [];
  const walk = async (dir: string) => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(dir, e.name));
      else if (e.name.endsWith(".ts")) files.push(join(dir, e.name));
    }
  };
  await walk(root);
  const classes = new Map<string, { parent: string; code: string | null; file: string }>();
  for (const file of files) {
    const text = await readFile(file, "utf8");
    const re = /class (\w+) extends (\w+)\b[^{]*\{/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      // The class body up to the next top-level class or function (good enough for our one-class-per-block style).
      const rest = text.slice(m.index + m[0].length);
      const end = rest.search(/\n(?:export |)(?:abstract )?(?:class|function|const|interface|type) /);
      const body = end < 0 ? rest : rest.slice(0, end);
      const code = /readonly code(?:: string)? = "([^"]+)"/.exec(body)?.[1] ?? null;
      const rel = relative(root, file);
      const same = classes.get(m[1]!);
      if (same) {
        // One definition per concept: an error class name is defined once.
        if ([same.parent, m[2]].some((p) => p!.endsWith("Error"))) assert.fail(`two error classes named ${m[1]} (${same.file}, ${rel})`);
        continue;
      }
      classes.set(m[1]!, { parent: m[2]!, code, file: rel });
    }
  }
  const isRunnerError = (name: string): boolean => {
    for (let at: string | undefined = name, hops = 0; at && hops < 20; at = classes.get(at)?.parent, hops++) {
      if (at === "RunnerError") return true;
    }
    return false;
  };
  return [...classes].filter(([name]) => name !== "RunnerError" && isRunnerError(name)).map(([name, c]) => ({ name, code: c.code, file: c.file }));
}

test("every RunnerError subclass has its own class name and a code no other class uses", async () => {
  const errors = await runnerErrorCodes();
  assert.ok(errors.length > 30, `found ${errors.length} RunnerError subclasses`);
  const byCode = new Map<string, string[]>();
  for (const e of errors) {
    if (e.code === null) continue;
    byCode.set(e.code, [...(byCode.get(e.code) ?? []), `${e.name} (${e.file})`]);
  }
  const clashes = [...byCode].filter(([, names]) => names.length > 1).map(([code, names]) => `${code}: ${names.join(", ")}`);
  assert.deepEqual(clashes, []);
  for (const code of byCode.keys()) assert.match(code, /^[a-z][a-z0-9_]*$/, `codes are stable snake_case: ${code}`);
});
