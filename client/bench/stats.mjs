// Shared by the client benches: their `--name value` arguments, their time limit, and the figures they report.
import { stopAll } from "../test/harness.mjs";

/** `--clients 1000 --seed 2` → `{ clients: "1000", seed: "2" }`. */
export function parseArgs(argv = process.argv.slice(2)) {
  const pairs = [];
  for (let i = 0; i < argv.length; i++) if (argv[i].startsWith("--")) pairs.push([argv[i].slice(2), argv[i + 1]]);
  return Object.fromEntries(pairs);
}

/** Gives the run up after `limitMs`: kills what it started and exits with 2. Returns the timer (clearTimeout
 * it when done). */
export function giveUpAfter(limitMs) {
  return setTimeout(async () => {
    console.error(`gave up after ${limitMs} ms`);
    await stopAll();
    process.exit(2);
  }, limitMs);
}

/** The `q` quantile of sorted `times`. */
export const quantile = (times, q) => times[Math.min(times.length - 1, Math.ceil(q * times.length) - 1)];

/** Most events inside any window of `windowMs` (sliding over the sorted times). */
export function peakPer(times, windowMs) {
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < times.length; hi++) {
    while (times[hi] - times[lo] >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}
