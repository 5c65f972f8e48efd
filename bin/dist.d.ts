// Types for bin/dist.js (plain JavaScript, so it runs before any loader).

/** The package root, with a trailing separator. */
export const PACKAGE_ROOT: string;
/** dist/'s stamp file name. */
export const STAMP_FILE: string;
/** `sha256:<hex>` over every file under src/ and the tsconfig files. */
export function sourceDigest(root?: string): string;
/** The digest dist/'s stamp holds, or null without a readable stamp. */
export function stampedDigest(root?: string): string | null;
/** Why dist/ cannot be used, or null when it matches src/. */
export function distStaleness(root?: string): string | null;
