import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, copyFile, mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { RunnerError } from "../../../errors.ts";
import { type BuildStep, checkBuildTools, EngineInstallError, isExecutable, runLogged } from "./build-tools.ts";
import type { GpuChoice } from "./native-binding.ts";

const execFileAsync = promisify(execFile);

/** The llama.cpp release node-llama-cpp bundles (its source, as a git bundle). */
export const BUNDLE_PATH = fileURLToPath(new URL("../../../../node_modules/node-llama-cpp/llama/gitRelease.bundle", import.meta.url));

/**
 * One official llama.cpp release archive for a platform, with its pinned
 * digest. `platform` is `${process.platform}-${process.arch}`; `binary` is
 * llama-server's path inside the unpacked archive (its libraries beside it).
 */
export interface ReleasePin {
  platform: string;
  url: string;
  sha256: string;
  binary: string;
}

/**
 * Pinned release archives of the bundled llama.cpp release. Empty: the
 * machine this was written on has no internet, and a digest we have not
 * computed from the real file must not be pinned. Filling it in (URL of
 * `llama-<tag>-bin-<platform>.tar.gz` and its sha256) enables the download
 * path; until then `install` builds from the bundle.
 */
export const RELEASE_PINS: readonly ReleasePin[] = [];

/** The downloaded archive is not the one pinned: nothing was installed. */
export class ReleaseDigestMismatchError extends RunnerError {
  readonly code = "release_digest_mismatch";
  readonly status = 502;
  constructor(url: string, expected: string, actual: string) {
    super(`The llama-server archive ${url} has sha256 ${actual}, not the pinned ${expected}: refusing to install it.`);
  }
}

export interface LlamaServerInstallOptions {
  /** The model-runner home: installs go under `<home>/engines/llama-server/`. */
  home: string;
  /** Where the build's log goes (`<logDir>/llama-server-build.log`). */
  logDir: string;
  bundlePath?: string | undefined;
  /** The HTTP client for downloads; without one only the build path is tried. */
  fetch?: typeof fetch | undefined;
  /** Release archives to download from; default RELEASE_PINS. */
  pins?: readonly ReleasePin[] | undefined;
  /** Progress lines for users ("building llama-server: 42%"). */
  onProgress?: ((line: string) => void) | undefined;
  /** PATH and the rest for the build tools. Default: this process's. */
  env?: NodeJS.ProcessEnv | undefined;
  /** Parallel compile jobs; default: the available cores. */
  jobs?: number | undefined;
  /** The GPU support a build gets (`cuda`, `vulkan`, `metal`); `auto`/`cpu`: cmake's defaults. Default `auto`. */
  gpu?: GpuChoice | undefined;
}

/** The GPU choices that change llama-server's build (each its own install directory and cmake flag). */
const GPU_BUILDS = { cuda: "-DGGML_CUDA=ON", vulkan: "-DGGML_VULKAN=ON", metal: "-DGGML_METAL=ON" } as const;
const gpuBuild = (gpu: GpuChoice | undefined): keyof typeof GPU_BUILDS | null =>
  gpu !== undefined && gpu in GPU_BUILDS ? (gpu as keyof typeof GPU_BUILDS) : null;

/** Where installs live under the home. */
export const llamaServerRoot = (home: string) => join(home, "engines", "llama-server");

const digests = new Map<string, Promise<string>>();

/** sha256 (hex) of a file, computed once per path and process. */
export function fileSha256(path: string): Promise<string> {
  let digest = digests.get(path);
  if (!digest) {
    digest = (async () => {
      const hash = createHash("sha256");
      await pipeline(createReadStream(path), hash);
      return hash.digest("hex");
    })();
    digest.catch(() => digests.delete(path));
    digests.set(path, digest);
  }
  return digest;
}

/** The install directory of the bundle's build: keyed by the bundle's digest (and the GPU support, for GPU builds). */
export async function builtDir(root: string, bundlePath: string, gpu?: GpuChoice): Promise<string> {
  const variant = gpuBuild(gpu);
  return join(root, `${await fileSha256(bundlePath)}${variant ? `-${variant}` : ""}`);
}

/** The directory a pinned archive unpacks into: keyed by its digest. */
export const releaseDir = (root: string, pin: ReleasePin) => join(root, `release-${pin.sha256}`);

/**
 * A llama-server installed before under `root`: the bundle's build first,
 * then a downloaded release for this platform. Null when none.
 */
export async function findInstalledLlamaServer(
  root: string,
  bundlePath: string,
  pins: readonly ReleasePin[] = RELEASE_PINS,
  gpu: GpuChoice = "auto",
): Promise<string | null> {
  // A GPU build asked for is only that build; otherwise any build, GPU builds first (they were installed on purpose).
  const wanted = gpuBuild(gpu);
  const variants: Array<GpuChoice> = wanted ? [wanted] : ["cuda", "vulkan", "metal", "auto"];
  for (const variant of variants) {
    const built = join(await builtDir(root, bundlePath, variant), "llama-server");
    if (await isExecutable(built)) return built;
  }
  if (wanted) return null;
  for (const pin of pins.filter((p) => p.platform === platformKey())) {
    const binary = join(releaseDir(root, pin), pin.binary);
    if (await isExecutable(binary)) return binary;
  }
  return null;
}

export const platformKey = () => `${process.platform}-${process.arch}`;

/**
 * Finds or puts a llama-server under the home: one installed before, else
 * the pinned release archive for this platform (when an HTTP client is
 * given), else a build from the bundled source. Resolves with its path.
 */
export async function installLlamaServer(options: LlamaServerInstallOptions, signal: AbortSignal): Promise<string> {
  const root = llamaServerRoot(options.home);
  const bundlePath = options.bundlePath ?? BUNDLE_PATH;
  const pins = options.pins ?? RELEASE_PINS;
  const found = await findInstalledLlamaServer(root, bundlePath, pins, options.gpu);
  if (found) return found;
  // The pinned archives are CPU builds: a GPU build is compiled.
  const pin = gpuBuild(options.gpu) ? undefined : pins.find((p) => p.platform === platformKey());
  if (pin && options.fetch) {
    try {
      return await downloadRelease(root, pin, options.fetch, signal, options.onProgress);
    } catch (error) {
      // A wrong archive is an error; an unreachable host falls back to the offline build.
      if (error instanceof ReleaseDigestMismatchError || signal.aborted) throw error;
      options.onProgress?.(`download failed (${(error as Error).message}); building from the bundled source instead`);
    }
  }
  return buildFromBundle({ ...options, bundlePath }, signal);
}

/** Removes every llama-server installed under the home. Resolves true if there was one. */
export async function uninstallLlamaServer(home: string): Promise<boolean> {
  const root = llamaServerRoot(home);
  const existed = await stat(root).then(() => true, () => false);
  await rm(root, { recursive: true, force: true });
  return existed;
}

// ---- download --------------------------------------------------------------

/**
 * Downloads `pin.url` into a temporary file while hashing it, checks the
 * digest, unpacks into a temporary directory and renames that into place:
 * a failure at any step leaves nothing under `root` but what was there.
 */
export async function downloadRelease(
  root: string,
  pin: ReleasePin,
  fetchFn: typeof fetch,
  signal: AbortSignal,
  onProgress?: (line: string) => void,
): Promise<string> {
  await mkdir(root, { recursive: true });
  const tmp = join(root, `.download-${randomBytes(6).toString("hex")}`);
  await mkdir(tmp);
  try {
    const archive = join(tmp, "archive.tar.gz");
    const res = await fetchFn(pin.url, { signal });
    if (!res.ok || !res.body) throw new EngineInstallError(`Downloading ${pin.url} failed: HTTP ${res.status}.`);
    const total = Number(res.headers.get("content-length") ?? 0);
    const hash = createHash("sha256");
    let received = 0;
    let shown = -1;
    const body = Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>);
    body.on("data", (chunk: Buffer) => {
      hash.update(chunk);
      received += chunk.length;
      const pct = total > 0 ? Math.floor((received / total) * 100) : -1;
      if (pct !== shown && pct % 10 === 0) {
        shown = pct;
        onProgress?.(`downloading llama-server: ${pct}%`);
      }
    });
    await pipeline(body, createWriteStream(archive), { signal });
    const actual = hash.digest("hex");
    if (actual !== pin.sha256) throw new ReleaseDigestMismatchError(pin.url, pin.sha256, actual);
    const unpacked = join(tmp, "unpacked");
    await mkdir(unpacked);
    await execFileAsync("tar", ["-xzf", archive, "-C", unpacked, "--no-same-owner"], { signal });
    const binary = join(unpacked, pin.binary);
    if (!(await isExecutable(binary))) throw new EngineInstallError(`The archive ${pin.url} has no executable ${pin.binary}.`);
    const final = releaseDir(root, pin);
    await rename(unpacked, final);
    onProgress?.("llama-server installed");
    return join(final, pin.binary);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

// ---- build -----------------------------------------------------------------

/**
 * The commands that build llama-server from the bundle, offline: clone the
 * bundle, configure without network features, tests or examples, and build
 * only the server. `BUILD_SHARED_LIBS=OFF` makes one self-contained binary
 * that can be moved into place (shared builds point at their build tree).
 */
export function buildSteps(bundlePath: string, workDir: string, jobs: number, gpu?: GpuChoice): BuildStep[] {
  const variant = gpuBuild(gpu);
  const src = join(workDir, "src");
  const build = join(workDir, "build");
  return [
    { what: "cloning the bundled llama.cpp source", command: "git", args: ["clone", "--quiet", bundlePath, src] },
    {
      what: "configuring",
      command: "cmake",
      args: [
        "-S", src, "-B", build,
        "-DCMAKE_BUILD_TYPE=Release",
        "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DBUILD_SHARED_LIBS=OFF",
        ...(variant ? [GPU_BUILDS[variant]] : []),
      ],
    },
    { what: "building llama-server", command: "cmake", args: ["--build", build, "--target", "llama-server", "-j", String(jobs)] },
  ];
}

async function buildFromBundle(options: LlamaServerInstallOptions & { bundlePath: string }, signal: AbortSignal): Promise<string> {
  const env = options.env ?? process.env;
  await checkBuildTools(env);
  const root = llamaServerRoot(options.home);
  const final = await builtDir(root, options.bundlePath, options.gpu);
  await mkdir(root, { recursive: true });
  await mkdir(options.logDir, { recursive: true });
  const logPath = join(options.logDir, "llama-server-build.log");
  const log = await open(logPath, "w");
  const work = join(root, `.build-${randomBytes(6).toString("hex")}`);
  const progress = options.onProgress ?? (() => undefined);
  try {
    progress(`building llama-server from the bundled llama.cpp (about 12 minutes on 2 cores); log: ${logPath}`);
    for (const step of buildSteps(options.bundlePath, work, options.jobs ?? availableParallelism(), options.gpu)) {
      progress(`${step.what}...`);
      await runLogged(step, env, log, signal, progress);
    }
    const staged = join(work, "install");
    await mkdir(staged);
    await copyFile(join(work, "build", "bin", "llama-server"), join(staged, "llama-server"));
    await chmod(join(staged, "llama-server"), 0o755);
    await rename(staged, final);
    progress("llama-server installed");
    return join(final, "llama-server");
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    if (error instanceof RunnerError) throw error;
    throw new EngineInstallError(`Building llama-server failed: ${(error as Error).message}. See ${logPath}.`, { cause: error });
  } finally {
    await log.close();
    await rm(work, { recursive: true, force: true });
  }
}

/** Lists what is installed under the home, for status lines. */
export async function installedLlamaServers(home: string): Promise<string[]> {
  return readdir(llamaServerRoot(home)).then((names) => names.filter((n) => !n.startsWith(".")), () => []);
}
