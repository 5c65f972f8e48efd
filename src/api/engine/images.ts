import { InvalidRequestError } from "../../errors.ts";

/**
 * Image input on the daemon's one inference path. Every dialect (OpenAI
 * chat, Ollama `images`, Anthropic image blocks, Responses `input_image`)
 * arrives here as OpenAI chat `image_url` parts; this checks them before a
 * model is loaded, so a bad image is a 400 that names the part:
 * - only `data:` URIs with base64 data are taken; the daemon fetches no
 *   http(s) URL (a model server reaching out to addresses named in request
 *   bodies is a server-side request forgery risk, and llama-server's own
 *   fetch is not what users expect either), and says so;
 * - the bytes must be a PNG, JPEG, GIF or BMP by their first bytes (what
 *   llama-server's image decoder reads); WebP and others are refused by name;
 * - `detail` other than `auto` is refused: the projector resizes every image
 *   to its own fixed size, there is no low/high choice to honour.
 * The request body limit (10 MiB) bounds the images' total size.
 */

/** Image formats llama-server's decoder (stb_image) reads, by their magic bytes. */
const FORMATS: ReadonlyArray<{ name: string; magic: readonly number[] }> = [
  { name: "PNG", magic: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] },
  { name: "JPEG", magic: [0xff, 0xd8, 0xff] },
  { name: "GIF", magic: [0x47, 0x49, 0x46, 0x38] },
  { name: "BMP", magic: [0x42, 0x4d] },
];

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The image format of `bytes` by magic, or null. */
export function sniffImage(bytes: Uint8Array): string | null {
  return FORMATS.find((f) => f.magic.length <= bytes.length && f.magic.every((b, i) => bytes[i] === b))?.name ?? null;
}

/** Checks one `image_url` value; throws a 400 naming `at` when it cannot be served. */
function checkImageUrl(value: unknown, at: string): void {
  const image = typeof value === "string" ? { url: value } : (value as { url?: unknown; detail?: unknown } | null);
  if (image === null || typeof image !== "object" || typeof image.url !== "string") {
    throw new InvalidRequestError(`${at}.image_url.url: must be a data: URI string.`, `${at}.image_url.url`);
  }
  if (image.detail !== undefined && image.detail !== "auto") {
    throw new InvalidRequestError(
      `${at}.image_url.detail: "${String(image.detail)}" is not supported; the model's projector resizes every image to its own size (use "auto" or leave it out).`,
      `${at}.image_url.detail`,
    );
  }
  const url = image.url;
  if (/^https?:/i.test(url)) {
    throw new InvalidRequestError(
      `${at}.image_url.url: image URLs are not fetched; send the image inline as a data: URI (data:image/png;base64,...).`,
      `${at}.image_url.url`,
    );
  }
  const match = /^data:([^;,]*)((?:;[^;,]*)*),(.*)$/s.exec(url);
  if (!match) throw new InvalidRequestError(`${at}.image_url.url: must be a data: URI (data:image/png;base64,...).`, `${at}.image_url.url`);
  const params = match[2]!.split(";").filter((p) => p !== "");
  const data = match[3]!.replace(/\s+/g, "");
  if (!params.includes("base64")) throw new InvalidRequestError(`${at}.image_url.url: the data: URI must be base64-encoded (;base64,).`, `${at}.image_url.url`);
  if (data === "" || data.length % 4 === 1 || !BASE64.test(data)) {
    throw new InvalidRequestError(`${at}.image_url.url: the image data is not valid base64.`, `${at}.image_url.url`);
  }
  const head = Buffer.from(data.slice(0, 64), "base64");
  if (sniffImage(head) === null) {
    throw new InvalidRequestError(
      `${at}.image_url.url: the data is not a PNG, JPEG, GIF or BMP image${match[1] ? ` (declared ${match[1]})` : ""}.`,
      `${at}.image_url.url`,
    );
  }
}

/**
 * The number of image parts in an OpenAI chat body, each checked (see the
 * module comment); 0 for a body without any. A malformed `messages` is left
 * for the engine's own checks to describe.
 */
export function checkChatImages(body: Record<string, unknown>): number {
  const messages = body.messages;
  if (!Array.isArray(messages)) return 0;
  let images = 0;
  for (const [i, message] of messages.entries()) {
    const content = (message as { content?: unknown } | null)?.content;
    if (!Array.isArray(content)) continue;
    for (const [j, part] of content.entries()) {
      if ((part as { type?: unknown } | null)?.type !== "image_url") continue;
      checkImageUrl((part as { image_url?: unknown }).image_url, `messages.${i}.content.${j}`);
      images++;
    }
  }
  return images;
}

/**
 * The body sent to the engine for a request with images: `cache_prompt`
 * false unless the client set it. The bundled llama-server release fails a
 * request whose reused prompt prefix ends between two adjacent images
 * ("Chunk not found", 500) and keeps failing on that slot; a request that
 * reuses no prefix is always served and heals the slot (measured). Text-only
 * requests keep prefix reuse: their prefix cannot end inside an image run.
 */
export function withImageGuard(body: Record<string, unknown>): Record<string, unknown> {
  return body.cache_prompt === undefined ? { ...body, cache_prompt: false } : body;
}
