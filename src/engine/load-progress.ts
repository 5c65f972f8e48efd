/**
 * How the built-in engine tells the daemon how far its model load is: a line
 * on stderr, `engine: load progress 0.350`, from node-llama-cpp's
 * `onLoadProgress` (one call per tensor, so a few dozen for a small model and
 * hundreds for a big one), thinned to one line per 5 % and the last (1).
 * The llama.cpp backend reads these lines back (`parseLoadProgressLine`) and
 * passes the fraction up as `RunRequest.onLoadProgress`. llama-server prints
 * nothing of the kind: its loads report no progress.
 */

const PREFIX = "engine: load progress ";
const LINE = /^engine: load progress (0(?:\.\d+)?|1(?:\.0+)?)$/;

/** The smallest step between two reported fractions (besides the last, 1). */
export const LOAD_PROGRESS_STEP = 0.05;

/** The line for `fraction` (0..1). */
export function loadProgressLine(fraction: number): string {
  return `${PREFIX}${Math.min(1, Math.max(0, fraction)).toFixed(3)}`;
}

/** The fraction a load-progress line reports, or null for any other line. */
export function parseLoadProgressLine(line: string): number | null {
  if (!line.startsWith(PREFIX)) return null;
  const m = LINE.exec(line);
  return m ? Number(m[1]) : null;
}

/**
 * node-llama-cpp's `onLoadProgress` thinned out: `report` gets a fraction
 * only once it is at least LOAD_PROGRESS_STEP past the last one reported,
 * and always gets 1 (once). Fractions never go back.
 */
export function throttledLoadProgress(report: (fraction: number) => void, step = LOAD_PROGRESS_STEP): (fraction: number) => void {
  let last = 0;
  let done = false;
  return (fraction) => {
    if (done || !Number.isFinite(fraction)) return;
    if (fraction >= 1) {
      done = true;
      report(1);
    } else if (fraction - last >= step) {
      last = fraction;
      report(fraction);
    }
  };
}
