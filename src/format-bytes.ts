/**
 * The one byte formatter (CLI tables and progress, error messages, artifact
 * configs). IEC units, powers of 1024, so every size the user sees is in one
 * unit family: `1234567` → `"1.18 MiB"`.
 *
 * `compact` is the artifact config's `size` field (`"1.18MiB"`, always two
 * decimals, no space). It is part of the bytes of an artifact built from a
 * Hugging Face pull, whose ID must not change between versions: keep it.
 */
export function formatBytes(bytes: number, opts: { compact?: boolean } = {}): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  let value = bytes;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  if (opts.compact) return `${value.toFixed(2)}${units[unit]}`;
  if (unit === 0) return `${value} B`;
  return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}
