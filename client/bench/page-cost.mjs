// The live ticker page's main-thread cost under a hot feed, in a real headless Chromium: `ringcast feed --demo`
// (--rate ticks/s over --symbols symbols) → redis-server → `ringcast serve` → the page at `/` showing all those
// symbols, one visible tab. For each case (conflation on/off × shared/dedicated mode) it measures over
// --seconds, after a warm-up:
//   - main-thread busy share: Performance.getMetrics' TaskDuration (time the renderer's main thread spent in
//     tasks) over the wall time; ScriptDuration, LayoutDuration, RecalcStyleDuration beside it;
//   - frames: a requestAnimationFrame loop in the page counts the frames drawn; expected: one per 16.7 ms
//     (headless Chromium draws at 60 Hz: an idle page gets 300 in 5 s) of the page's window; dropped: the
//     difference;
//   - long tasks (PerformanceObserver "longtask": ≥ 50 ms) and the ticks the page drew (data-price changes).
// Bounded (--limit-s; a case whose page stops answering is reported so), kills what it started.
//
//   RINGCAST_BIN=target/release/ringcast node --experimental-websocket client/bench/page-cost.mjs \
//     [--rate 2000] [--symbols 50] [--seconds 10] [--runs 1] [--conflation on,off] [--modes shared,dedicated] \
//     [--limit-s 300] [--verbose 1]

import { BIN, start, startStack, stopAll, until } from "../test/harness.mjs";
import { badge, startBrowser } from "../test/browser.mjs";
import { giveUpAfter, parseArgs } from "./stats.mjs";

const args = parseArgs();
const RATE = Number(args.rate ?? 2000);
const SYMBOLS = Number(args.symbols ?? 50);
const SECONDS = Number(args.seconds ?? 10);
const RUNS = Number(args.runs ?? 1);
const LIMIT_MS = Number(args["limit-s"] ?? 300) * 1000;
const VSYNC_MS = 1000 / 60; // headless Chromium draws at 60 Hz

// The demo feed's symbols (src/cli/market.rs: PSX tickers first, then SYM0001, …).
const PSX = (
  "EFERT LUCK HASCOL OGDC PPL HBL UBL ENGRO FFC PSO MCB MARI POL HUBC KAPCO NBP BAFL MEBL SNGP SSGC TRG SYS " +
  "DGKC MLCF FCCL PIOC KOHC CHCC ATRL NRL PRL BOP AKBL BAHL FABL ABL HMB SEARL GLAXO ABOT INDU HCAR PSMC MTL " +
  "COLG NESTLE EPCL LOTCHEM ICI FATIMA DAWH ISL ASTL INIL NML GATM KTML ILP UNITY AVN NETSOL OCTOPUS PAEL WTL " +
  "KEL NCPL PKGP ENGROH FFBL AGP FEROZ HINOON CPHL SHEL APL BYCO CNERGY GHGL TGL PKGS CEPB THALL MUGHAL AICL " +
  "JSCL EFUG IGIHL DCR GHNI SAZEW ATLH MEHT TOMCL SCBPL JSBL SNBL BIPL SILK FCEPL SPEL"
).split(" ");
const symbols = Array.from({ length: SYMBOLS }, (_, n) => PSX[n] ?? `SYM${String(n - PSX.length + 1).padStart(4, "0")}`);

const hardStop = giveUpAfter(LIMIT_MS);

// In the page: frame times, long tasks, and how many board prices changed (what the page drew).
const PROBE = `(() => {
  window.bench = { frames: [], longTasks: 0, longMs: 0, draws: 0, on: false };
  const loop = (t) => { if (window.bench.on) window.bench.frames.push(t); requestAnimationFrame(loop); };
  requestAnimationFrame(loop);
  new PerformanceObserver((list) => {
    if (!window.bench.on) return;
    for (const e of list.getEntries()) { window.bench.longTasks++; window.bench.longMs += e.duration; }
  }).observe({ type: "longtask" });
  new MutationObserver((records) => { if (window.bench.on) window.bench.draws += records.length; })
    .observe(document.getElementById("board"), { subtree: true, attributes: true, attributeFilter: ["data-price"] });
})()`;

const metricsOf = async (tab) =>
  Object.fromEntries((await tab.call("Performance.getMetrics")).metrics.map(({ name, value }) => [name, value]));

async function measure(browser, port, { conflate, mode }) {
  const q = `?symbols=${symbols.join(",")}${conflate ? "" : "&conflate=off"}${mode === "dedicated" ? "&mode=dedicated" : ""}`;
  const tab = await browser.openTab(`http://127.0.0.1:${port}/${q}`);
  const step = (what) => args.verbose && console.error(`${conflate ? "on" : "off"}/${mode}: ${what}`);
  try {
    await tab.activate();
    await tab.call("Performance.enable", { timeDomain: "timeTicks" });
    await until("the page live", async () => (await badge(tab)) === "live", 30_000);
    step("live");
    await tab.evaluate(PROBE);
    await new Promise((r) => setTimeout(r, 2000)); // warm-up
    await tab.evaluate("window.bench.start = performance.now(); window.bench.on = true");
    const m0 = await metricsOf(tab);
    const w0 = Date.now();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    step("measured");
    const m1 = await metricsOf(tab);
    const wallMs = Date.now() - w0;
    const b = await tab.evaluate("(() => { window.bench.on = false; window.bench.end = performance.now(); return window.bench; })()");
    // Against the page's own window (a starved page runs the start and stop late).
    const expected = Math.round((b.end - b.start) / VSYNC_MS);
    const d = (k) => ((m1[k] - m0[k]) * 1000) / wallMs; // seconds of k per second of wall time
    return {
      busy: d("TaskDuration"),
      script: d("ScriptDuration"),
      layout: d("LayoutDuration"),
      style: d("RecalcStyleDuration"),
      other: d("TaskOtherDuration"),
      frames: b.frames.length,
      expected,
      dropped: Math.max(0, expected - b.frames.length),
      longTasks: b.longTasks,
      draws: b.draws,
      pageMs: b.end - b.start,
      wallMs,
      mode: await tab.evaluate("window.ringcast.mode"),
    };
  } finally {
    await tab.close();
  }
}

const { port, redisUrl } = await startStack();
start(BIN, ["--log", "warn", "feed", "--demo", "--symbols", String(SYMBOLS), "--rate", String(RATE), "--seed", "1", "--redis", redisUrl]);
const browser = await startBrowser();
const pct = (x) => `${(x * 100).toFixed(1)}%`;
console.log(`feed --demo --symbols ${SYMBOLS} --rate ${RATE}; ${SECONDS} s per case after 2 s warm-up; ${RUNS} run(s)`);
console.log("| conflation | mode | main thread busy | script | style | layout | other | frames (of expected) | dropped | long tasks | prices drawn/s |");
console.log("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
try {
  for (let run = 0; run < RUNS; run++) {
    for (const conflate of String(args.conflation ?? "on,off").split(",").map((c) => c === "on")) {
      for (const mode of String(args.modes ?? "shared,dedicated").split(",")) {
        const r = await Promise.race([
          measure(browser, port, { conflate, mode }),
          new Promise((resolve) => setTimeout(() => resolve(null), SECONDS * 1000 + 60_000)),
        ]);
        if (!r) {
          console.log(`| ${conflate ? "on" : "off"} | ${mode} | page unresponsive (no answer within ${SECONDS + 60} s) |`);
          continue;
        }
        console.log(
          `| ${conflate ? "on" : "off"} | ${r.mode} | ${pct(r.busy)} | ${pct(r.script)} | ${pct(r.style)} | ${pct(r.layout)} | ${pct(r.other)} | ` +
            `${r.frames} (${r.expected}) | ${r.dropped} | ${r.longTasks} | ${Math.round((r.draws * 1000) / r.pageMs)} |`,
        );
      }
    }
  }
} finally {
  await browser.close();
  clearTimeout(hardStop);
  await stopAll();
}
process.exit(0);
