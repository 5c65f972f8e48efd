import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { DOCKER_HUB_HOST } from "./reference.ts";

/** Username/password (or identity token as password) for one registry. */
export interface RegistryCredentials {
  username: string;
  password: string;
}

/** Where credentials come from; all optional. The daemon fills these from its config (never from env here). */
export interface CredentialSources {
  /** `~/.docker/config.json` (`auths`, `credsStore`, `credHelpers`). */
  dockerConfigPath?: string;
  /** DOCKER_USERNAME / DOCKER_PASSWORD: used for every registry when set, as DMR does. */
  dockerUsername?: string;
  dockerPassword?: string;
  /** Runs a `docker-credential-<helper> get` (injectable for tests). */
  runCredentialHelper?: (helper: string, serverUrl: string) => Promise<RegistryCredentials | null>;
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/** The keys docker login writes for a host: Docker Hub uses its legacy v1 URL. */
function configKeys(host: string): string[] {
  if (host === DOCKER_HUB_HOST || host === "docker.io" || host === "index.docker.io") {
    return ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"];
  }
  return [host, `https://${host}`, `http://${host}`, `https://${host}/v1/`, `https://${host}/v2/`];
}

/**
 * Resolves credentials for `host`: explicit username/password first, then the
 * Docker config's per-host `credHelpers`, its `auths` entry, then `credsStore`.
 * Returns null for anonymous access. Errors reading the config are ignored
 * (anonymous), except a helper that fails, which is reported as no credentials.
 */
export async function resolveCredentials(host: string, src: CredentialSources): Promise<RegistryCredentials | null> {
  if (src.dockerUsername && src.dockerPassword) return { username: src.dockerUsername, password: src.dockerPassword };
  if (!src.dockerConfigPath) return null;
  let cfg: DockerConfigFile;
  try {
    cfg = JSON.parse(await readFile(src.dockerConfigPath, "utf8")) as DockerConfigFile;
  } catch {
    return null;
  }
  const keys = configKeys(host);
  const run = src.runCredentialHelper ?? runCredentialHelper;
  for (const k of keys) {
    const helper = cfg.credHelpers?.[k];
    if (helper) return run(helper, keys[0]!);
  }
  for (const k of keys) {
    const a = cfg.auths?.[k];
    if (!a) continue;
    if (a.identitytoken) return { username: "<token>", password: a.identitytoken };
    if (a.username && a.password) return { username: a.username, password: a.password };
    if (a.auth) {
      const decoded = Buffer.from(a.auth, "base64").toString("utf8");
      const i = decoded.indexOf(":");
      if (i > 0) return { username: decoded.slice(0, i), password: decoded.slice(i + 1) };
    }
  }
  if (cfg.credsStore) return run(cfg.credsStore, keys[0]!);
  return null;
}

/** `docker-credential-<helper> get` with the server URL on stdin (docker-credential-helpers protocol). */
export function runCredentialHelper(helper: string, serverUrl: string): Promise<RegistryCredentials | null> {
  return new Promise((resolve) => {
    let out = "";
    const child = spawn(`docker-credential-${helper}`, ["get"], { stdio: ["pipe", "pipe", "ignore"] });
    child.on("error", () => resolve(null));
    child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
    child.on("close", (code) => {
      if (code !== 0) return resolve(null);
      try {
        const j = JSON.parse(out) as { Username?: string; Secret?: string };
        resolve(j.Username && j.Secret ? { username: j.Username, password: j.Secret } : null);
      } catch {
        resolve(null);
      }
    });
    child.stdin.end(serverUrl);
  });
}

/** One parsed `WWW-Authenticate` challenge. */
export interface AuthChallenge {
  scheme: "basic" | "bearer";
  params: Record<string, string>;
}

/** Parses `Bearer realm="…",service="…",scope="…"` (quoted values may hold commas). */
export function parseChallenge(value: string): AuthChallenge | null {
  const m = /^\s*(\w+)\s*(.*)$/.exec(value);
  if (!m) return null;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== "basic" && scheme !== "bearer") return null;
  const params: Record<string, string> = {};
  const re = /(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let p: RegExpExecArray | null; (p = re.exec(m[2] ?? "")); ) params[p[1]!.toLowerCase()] = p[2] ?? p[3] ?? "";
  return { scheme, params };
}
