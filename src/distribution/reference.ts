import { InvalidRequestError } from "../errors.ts";
import { InvalidReferenceError } from "./errors.ts";
import { isDigest, type Digest } from "./digest.ts";

/**
 * Model references, parsed and normalized as Docker Model Runner does
 * (`distribution/client.go:normalizeModelName`, dmr.md §3):
 * `smollm2` → `ai/smollm2:latest` on docker.io, `Foo/Bar:Q4` → `foo/bar:Q4`
 * (the name is lowercased, the tag kept), `hf.co/…` ≡ `huggingface.co/…`.
 */
export interface ModelReference {
  /** What the user typed, trimmed. */
  readonly original: string;
  /** Registry name as shown to users: `docker.io`, `huggingface.co`, `127.0.0.1:5000`. */
  readonly registry: string;
  /** Host (and port) to talk to: `registry-1.docker.io` for docker.io. */
  readonly registryHost: string;
  /** Repository path inside the registry, lowercased: `ai/smollm2`. */
  readonly repository: string;
  /** Tag; `latest` when none was given. */
  readonly tag: string;
  /** Set when the reference pinned a digest (`name@sha256:…`). */
  readonly digest?: Digest;
  /** The canonical string stored as a tag: `ai/smollm2:latest`, `registry.example.com/team/model:v2`. */
  readonly normalized: string;
  readonly isHuggingFace: boolean;
}

/** A reference is either a name or a stored model ID (12/64 hex, or `sha256:<hex>`). */
export type ParsedReference = { kind: "name"; ref: ModelReference } | { kind: "id"; idPrefix: string };

export const DOCKER_HUB = "docker.io";
export const DOCKER_HUB_HOST = "registry-1.docker.io";
export const HUGGING_FACE = "huggingface.co";

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$/;
/** distribution/reference's NameTotalLengthMax. */
export const MAX_NAME_LENGTH = 255;
/** A long input quoted in an error, cut short. */
const abbreviated = (input: string) => (input.length > 120 ? `${input.slice(0, 100)}...(${input.length} characters)` : input);
const HEX_ID = /^(?:[0-9a-f]{12}|[0-9a-f]{64})$/;

/** Parses any user-given reference; IDs are returned for the store to resolve. Throws InvalidReferenceError. */
export function parseAnyReference(input: string): ParsedReference {
  const s = input.trim();
  if (HEX_ID.test(s)) return { kind: "id", idPrefix: s };
  if (s.startsWith("sha256:")) {
    if (!isDigest(s)) throw new InvalidReferenceError(input, "a sha256 ID must have 64 lowercase hex digits");
    return { kind: "id", idPrefix: s.slice(7) };
  }
  return { kind: "name", ref: parseReference(input) };
}

/** Parses a model name reference (not an ID). Throws InvalidReferenceError quoting the input. */
export function parseReference(input: string): ModelReference {
  let s = input.trim();
  if (s === "") throw new InvalidReferenceError(input, "it is empty");
  if (/\s/.test(s)) throw new InvalidReferenceError(input, "it contains whitespace");
  if (/^https?:\/\//i.test(s)) throw new InvalidReferenceError(input, "leave out the URL scheme");

  let digest: Digest | undefined;
  const at = s.indexOf("@");
  if (at >= 0) {
    const d = s.slice(at + 1);
    if (!isDigest(d)) throw new InvalidReferenceError(input, `"${d}" is not a sha256 digest`);
    digest = d;
    s = s.slice(0, at);
  }
  // The tag is what follows the last ':' after the last '/', so `host:5000/repo` has no tag.
  let tag = "latest";
  const lastSlash = s.lastIndexOf("/");
  const colon = s.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = s.slice(colon + 1);
    s = s.slice(0, colon);
    if (!TAG.test(tag)) throw new InvalidReferenceError(input, `"${tag}" is not a valid tag`);
  }

  let registry = DOCKER_HUB;
  let path = s;
  const firstSlash = s.indexOf("/");
  if (firstSlash > 0) {
    const first = s.slice(0, firstSlash);
    if (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("[")) {
      if (!HOST.test(first)) throw new InvalidReferenceError(input, `"${first}" is not a valid registry host`);
      registry = first.toLowerCase();
      path = s.slice(firstSlash + 1);
    }
  }
  if (registry === "hf.co") registry = HUGGING_FACE;
  if (registry === "index.docker.io" || registry === DOCKER_HUB_HOST) registry = DOCKER_HUB;
  path = path.toLowerCase();
  if (registry === DOCKER_HUB && !path.includes("/")) path = `ai/${path}`;
  const components = path.split("/");
  for (const c of components) {
    if (!COMPONENT.test(c)) {
      throw new InvalidReferenceError(input, `"${c}" is not a valid repository name component`);
    }
  }
  if (registry === HUGGING_FACE && components.length !== 2) {
    throw new InvalidReferenceError(input, "Hugging Face references are hf.co/<org>/<repo>[:<quantization>]");
  }
  // DMR's parser (distribution/reference) caps the fully qualified name, registry included.
  const qualified = `${registry}/${path}`;
  if (qualified.length > MAX_NAME_LENGTH) {
    throw new InvalidReferenceError(abbreviated(input), `the repository name is ${qualified.length} characters long (with its registry); at most ${MAX_NAME_LENGTH} are allowed`);
  }
  const name = registry === DOCKER_HUB ? path : qualified;
  return {
    original: input.trim(),
    registry,
    registryHost: registry === DOCKER_HUB ? DOCKER_HUB_HOST : registry,
    repository: path,
    tag,
    ...(digest ? { digest } : {}),
    normalized: digest && colon <= lastSlash ? `${name}@${digest}` : `${name}:${tag}`,
    isHuggingFace: registry === HUGGING_FACE,
  };
}

/** Normalizes a name reference to its stored tag form (`smollm2` → `ai/smollm2:latest`). */
export function normalizeReference(input: string): string {
  return parseReference(input).normalized;
}

/** Plain HTTP (Ollama's `insecure`) applies to registries only: an InvalidRequestError for hf.co, which is always HTTPS. */
export function checkInsecureAllowed(ref: ModelReference): void {
  if (ref.isHuggingFace) throw new InvalidRequestError("'insecure' is for registries; Hugging Face is always reached over HTTPS.", "insecure");
}

/** True for hosts we talk plain HTTP to without being told: loopback addresses. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\./.test(h);
}
