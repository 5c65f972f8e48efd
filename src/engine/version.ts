import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

/**
 * The engine's `--version` line, in llama-server's `version: ...` form:
 * the binding's version, the compute variant it uses, and whether it is a
 * native build for this machine (`mr install-runner --engine built-in`) or
 * the prebuilt binary the package ships. Loading the binding here is the
 * real check that it works on this machine.
 */
export async function engineVersionLine(): Promise<string> {
  const { version } = await nodeLlamaCppPackage();
  const llama = await getLlama({ gpu: "auto", build: "never", skipDownload: true, logLevel: LlamaLogLevel.error, progressLogs: false });
  try {
    const variant = llama.gpu === false ? "CPU" : { cuda: "CUDA", vulkan: "Vulkan", metal: "Metal" }[llama.gpu];
    const build = llama.buildType === "localBuild" ? `native ${variant} build` : `prebuilt ${variant} binary`;
    return `version: node-llama-cpp ${version}, ${build}`;
  } finally {
    await llama.dispose();
  }
}

/** The installed node-llama-cpp package: its folder and version. */
export async function nodeLlamaCppPackage(): Promise<{ root: string; version: string }> {
  // The package exports no ./package.json; its entry is dist/index.js.
  const root = join(dirname(createRequire(import.meta.url).resolve("node-llama-cpp")), "..");
  const { version } = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version: string };
  return { root, version };
}
