import assert from "node:assert/strict";
import { access, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { MissingBuildToolError } from "../../src/inference/backends/llamacpp/build-tools.ts";
import { buildSteps } from "../../src/inference/backends/llamacpp/llama-server-install.ts";
import { buildNativeBinding, keepNativeBuilds, keptBuildsDir, nativeBuildStep, nodeLlamaCppCli, parseGpuChoice, restoreNativeBuilds } from "../../src/inference/backends/llamacpp/native-binding.ts";
import { LlamaCppBackend } from "../../src/inference/index.ts";
import { tempDir } from "../helpers/models.ts";
import { buildToolsPathWithout } from "../helpers/processes.ts";

// The real compile takes ~15 minutes of both cores, so the suite stops short of it: it checks the command (against
// node-llama-cpp's own CLI, which must exist), the tool check, the failure path with a stand-in for that CLI, and that
// a failed build leaves the prebuilt engine serving. The compile itself was run by hand (docs/engine.md has the figures).

describe("the built-in engine's native build (mr install-runner --engine built-in)", () => {
  test("the command is node-llama-cpp's own `source download` from the bundle, for the GPU asked", async () => {
    await access(nodeLlamaCppCli());
    assert.deepEqual(nativeBuildStep("cpu").args.slice(1), ["source", "download", "--gpu", "false", "--noUsageExample"]);
    assert.deepEqual(nativeBuildStep("cuda").args.slice(1, 5), ["source", "download", "--gpu", "cuda"]);
    assert.equal(nativeBuildStep("auto").command, process.execPath);
    assert.equal(parseGpuChoice("vulkan"), "vulkan");
    assert.throws(() => parseGpuChoice("rocm"), (e: Error & { param?: string; status?: number }) => e.status === 400 && e.param === "gpu" && /auto, cpu, cuda, vulkan, metal/.test(e.message));
    // llama-server's build gets the matching cmake switch; auto and cpu keep cmake's defaults.
    assert.ok(buildSteps("/b", "/w", 2, "cuda")[1]!.args.includes("-DGGML_CUDA=ON"));
    assert.ok(!buildSteps("/b", "/w", 2, "cpu")[1]!.args.some((a) => a.startsWith("-DGGML_")));
  });

  test("a missing cmake is one line saying what to install", async () => {
    const logDir = await tempDir("mr-logs-");
    await assert.rejects(buildNativeBinding({ gpu: "cpu", logDir, env: { PATH: await buildToolsPathWithout("cmake") } }, AbortSignal.timeout(10_000)), (e: unknown) => {
      assert.ok(e instanceof MissingBuildToolError);
      assert.doesNotMatch(e.message, /\n/);
      assert.match(e.message, /^Cannot build the built-in engine for this machine: cmake not found on PATH\. Install cmake \(Debian\/Ubuntu: apt-get install/);
      return true;
    });
  });

  test("a failing build names its log and reports the build tool's progress (make's and Ninja's lines) (a stand-in for node-llama-cpp's CLI)", async () => {
    const dir = await tempDir("mr-native-");
    const cli = join(dir, "fake-node-llama-cpp-cli.mjs");
    await writeFile(cli, "console.log('[ 10%] Building ggml'); console.log('[ 55%] Building llama'); console.log('[3/4] Building addon'); console.error('error: out of disk'); process.exit(3);\n");
    const progress: string[] = [];
    await assert.rejects(buildNativeBinding({ gpu: "cpu", logDir: dir, cli, onProgress: (l) => progress.push(l) }, AbortSignal.timeout(30_000)), (e: Error & { code?: string }) => {
      assert.equal(e.code, "install_failed");
      assert.match(e.message, /^Compiling the built-in engine failed: .*exited with code 3: .*error: out of disk.*See .*built-in-build\.log\.$/);
      return true;
    });
    assert.deepEqual(progress.filter((l) => l.endsWith("%")), ["compiling the built-in engine: 10%", "compiling the built-in engine: 55%", "compiling the built-in engine: 75%"]);
    assert.match(await readFile(join(dir, "built-in-build.log"), "utf8"), /error: out of disk/);
  });

  test("the backend: status says prebuilt or native; a failed build leaves the checked engine serving", async () => {
    const logDir = await tempDir("mr-logs-");
    const backend = new LlamaCppBackend({ logDir, env: { ...process.env, PATH: await buildToolsPathWithout("cmake") } });
    await backend.install(AbortSignal.timeout(60_000));
    const checked = backend.status();
    assert.match(checked, /^Running: llama\.cpp built-in \(node-llama-cpp 3\.21\.1, (native|prebuilt) (CPU|CUDA|Vulkan|Metal) (build|binary)\)/);
    if (checked.includes("prebuilt")) {
      assert.match(checked, /; mr install-runner --engine built-in compiles it for this machine \(faster prompt processing\)$/);
      await assert.rejects(backend.install(AbortSignal.timeout(60_000), { acquire: true, gpu: "cpu" }), MissingBuildToolError);
      assert.equal(backend.status(), checked, "the prebuilt engine still serves");
    } else {
      // A native build is there already: an explicit install has nothing to compile.
      await backend.install(AbortSignal.timeout(60_000), { acquire: true });
      assert.equal(backend.status(), checked);
    }
    await assert.rejects(backend.install(AbortSignal.timeout(5_000), { gpu: "cuda" }), /"gpu" applies to an install/);
    await assert.rejects(
      new LlamaCppBackend({ llamaServerPath: "/x/llama-server" }).install(AbortSignal.timeout(5_000), { engine: "llama-server", acquire: true, gpu: "cuda" }),
      /"gpu" cannot be chosen: MODEL_RUNNER_LLAMA_SERVER/,
    );
  });
});

test("a native build is kept under the home and put back where a reinstall of the package lost it", async () => {
  const root = await mkdtemp(join(tmpdir(), "mr-native-kept-"));
  try {
    const localBuilds = join(root, "pkg", "llama", "localBuilds");
    const kept = keptBuildsDir(join(root, "home"), "3.21.1");
    assert.equal(kept, join(root, "home", "engines", "built-in", "node-llama-cpp-3.21.1"));
    // What node-llama-cpp's build leaves: the loadable parts, the build tree, and a build that broke off.
    await mkdir(join(localBuilds, "linux-x64", "Release"), { recursive: true });
    await writeFile(join(localBuilds, "linux-x64", "Release", "llama-addon.node"), "binary");
    await writeFile(join(localBuilds, "linux-x64", "Release", "_nlcBuildMetadata.json"), "{}");
    await writeFile(join(localBuilds, "linux-x64", "buildDone.status"), "");
    await writeFile(join(localBuilds, "linux-x64", "build.ninja"), "tree");
    await mkdir(join(localBuilds, "linux-x64-vulkan", "Release"), { recursive: true });
    await keepNativeBuilds(localBuilds, kept);
    assert.deepEqual((await readdir(kept)).sort(), ["linux-x64"]);
    assert.deepEqual((await readdir(join(kept, "linux-x64"))).sort(), ["Release", "buildDone.status"]);

    // Nothing to restore while the package still has it.
    assert.deepEqual(await restoreNativeBuilds(kept, localBuilds), []);
    // `npm ci`: the package's folder is gone.
    await rm(join(root, "pkg"), { recursive: true });
    assert.deepEqual(await restoreNativeBuilds(kept, localBuilds), ["linux-x64"]);
    assert.equal(await readFile(join(localBuilds, "linux-x64", "Release", "llama-addon.node"), "utf8"), "binary");
    assert.deepEqual((await readdir(localBuilds)).sort(), ["linux-x64"]);
    // A home with nothing kept restores nothing.
    assert.deepEqual(await restoreNativeBuilds(keptBuildsDir(join(root, "other"), "3.21.1"), localBuilds), []);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
