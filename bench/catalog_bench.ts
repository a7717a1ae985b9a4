/**
 * The MediaCatalog at scale, on 1,000, 100,000 and 1,000,000 titles:
 * - start-up to ready, beside a bare Deno script that reads and `JSON.parse`s
 *   the same file (and a catalog of 1,000 titles: what starting takes with
 *   next to no titles), with peak RSS at 1,000,000 titles;
 * - getTilesByName calls/s through Ice with 8 callers, exact (one title found)
 *   and substring, and getTilesByTags, with the catalog's CPU time per call;
 * - the same searches timed inside the process (server side), and the memory
 *   the name index costs per title;
 * - edit latency (p50/p99) until the edit is durable, through Ice and inside
 *   the process.
 *
 * With `BENCH_BASE=<another clone>/` (set up with `./setup`) the same figures
 * are taken from that clone's catalog in the same run, interleaved round by
 * round, and printed as ratios (median and spread over the rounds).
 *
 * @module
 */
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { CatalogDatabase } from "../catalog_database.ts";
import { NameIndex } from "../catalog_index.ts";
import { searchKey } from "../catalog_database.ts";
import { createLogger, initializeCommunicator } from "../service.ts";
import { Child, eventually, IceStormServer, ROOT, startService } from "../harness.ts";
import { cpuSeconds, latencySummary, percentile } from "./stats.ts";

const SECONDS = 2;
const ROUNDS = 3;
const EDITS = 300;
const WORDS = ["noche", "película", "river", "dark", "light", "ciudad", "blue", "rojo", "story", "king", "mar", "sol"];
const TAGS = 1000;
const SUBSTRING_QUERY = "RIVER 77"; // a few dozen to a few hundred titles
const TAG_QUERY = ["tag-7", "tag-11"]; // any of two tags: about 0.6% of the titles
const BASE = Deno.env.get("BENCH_BASE");

/** The name of title number `i`: unique, two words and the number. */
function titleName(i: number): string {
  return `${WORDS[i % 12]} ${WORDS[(i * 7 + 3) % 12]} ${i}`;
}
const EXACT_QUERY = titleName(500).toUpperCase(); // one title, in every database

/** The id of title number `i`. */
function titleId(i: number): string {
  return i.toString(16).padStart(64, "0");
}

/** A database file with `count` titles, three tags each. */
async function writeDatabase(path: string, count: number): Promise<void> {
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const tags = [0, 1, 2].map((k) => `tag-${(i * (k * 2 + 3) + k) % TAGS}`);
    lines.push(`  ${JSON.stringify(titleId(i))}: ${JSON.stringify({ name: titleName(i), tags })}`);
  }
  await Deno.writeTextFile(path, `{\n${lines.join(",\n")}\n}\n`);
}

/** Calls/s of `call` with `callers` concurrent callers for SECONDS. */
async function rate(callers: number, call: () => PromiseLike<unknown>): Promise<number> {
  let calls = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: callers }, async () => {
    while (performance.now() < end) {
      await call();
      calls++;
    }
  }));
  return Math.round(calls / SECONDS);
}

/** Peak resident memory of process `pid` so far, in MB. */
function peakRss(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Math.round(Number(/VmHWM:\s+(\d+)/.exec(status)![1]) / 1024);
}

/** `median (min-max)` of `values`, as ratios. */
function spread(values: number[]): string {
  return `${percentile(values, 50).toFixed(2)}x (${Math.min(...values).toFixed(2)}-${Math.max(...values).toFixed(2)})`;
}

/** A catalog of one clone (`root`) over the database `path`, with an IceStorm of its own (so no two replicate). */
interface RunningCatalog {
  child: Child;
  icestorm: IceStormServer;
  catalog: IceFlix.MediaCatalogPrx;
  /** Milliseconds from spawn to its proxy on stdout. */
  ready: number;
}

/** Starts the catalog of clone `root` on database `path`, with a new IceStorm unless given one (then stopped with it). */
async function startCatalog(root: string, path: string, shared?: IceStormServer): Promise<RunningCatalog> {
  const icestorm = shared ?? await IceStormServer.start();
  const started = performance.now();
  const child = new Child(`${root}run_service`, [
    "catalog",
    icestorm.option,
    `--IceFlix.Catalog.DatabaseFile=${path}`,
  ], { cwd: root });
  const proxy = await child.line(1, 900);
  const ready = performance.now() - started;
  return { child, icestorm, catalog: IceFlix.MediaCatalogPrx.uncheckedCast(client.stringToProxy(proxy)), ready };
}

async function stopCatalog(running: RunningCatalog): Promise<void> {
  await running.child.stop();
  await running.icestorm.stop();
}

/** Milliseconds a bare Deno process takes to read and parse `path`, and its peak RSS in MB. */
async function bareParse(path: string): Promise<{ ms: number; rss: number }> {
  const script = `JSON.parse(Deno.readTextFileSync(${JSON.stringify(path)}));` +
    `console.log(/VmHWM:\\s+(\\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))[1]);`;
  const started = performance.now();
  const output = await new Deno.Command(Deno.execPath(), { args: ["eval", script], stderr: "inherit" }).output();
  const ms = performance.now() - started;
  return { ms, rss: Math.round(Number(new TextDecoder().decode(output.stdout)) / 1024) };
}

/** In a process of its own with `--expose-gc`: the bytes per title the name index costs over `count` names. */
async function indexMemory(count: number): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--v8-flags=--expose-gc", import.meta.filename!, "index-memory", String(count)],
    stderr: "inherit",
  }).output();
  return new TextDecoder().decode(output.stdout).trim();
}

if (Deno.args[0] === "index-memory") {
  const count = Number(Deno.args[1]);
  const gc = (globalThis as unknown as { gc: () => void }).gc;
  const keys = Array.from({ length: count }, (_, i) => searchKey(titleName(i)));
  const used = () => {
    gc();
    const { heapUsed, external } = Deno.memoryUsage();
    return heapUsed + external;
  };
  const before = used();
  const index = new NameIndex((position) => keys[position]);
  for (let i = 0; i < count; i++) index.add();
  const bytes = used() - before;
  console.log(
    `${Math.round(bytes / count)} bytes/title (${Math.round(index.indexBytes / count)} of them trigram lists; ` +
      `names of ${Math.round(keys.reduce((sum, key) => sum + key.length, 0) / count)} characters on average)`,
  );
  Deno.exit(0);
}

await Deno.mkdir(`${ROOT}data`, { recursive: true });
const folder = await Deno.makeTempDir({ dir: `${ROOT}data`, prefix: "catalog-bench-" });
const baseFolder = BASE && await Deno.makeTempDir({ dir: `${BASE}data`, prefix: "catalog-bench-" });
const client = initializeCommunicator([]);
const paths = new Map<number, { ours: string; base?: string }>();
const running: RunningCatalog[] = [];
try {
  for (const count of [1_000, 100_000, 1_000_000]) {
    const ours = `${folder}/catalog-${count}.json`;
    await writeDatabase(ours, count);
    const base = baseFolder ? `${baseFolder}/catalog-${count}.json` : undefined;
    if (base) await Deno.copyFile(ours, base);
    paths.set(count, { ours, base });
  }
  const label = (count: number) => count.toLocaleString("en");

  console.log("# start-up to ready (ms), rounds interleaved: bare read+JSON.parse / this clone / base");
  for (const count of [100_000, 1_000_000]) {
    const { ours, base } = paths.get(count)!;
    const ratios: number[] = [];
    const baseRatios: number[] = [];
    /** A catalog's start with next to no titles, beside the bare parse: what Deno, Ice and IceStorm take anyway. */
    const fixedRatios: number[] = [];
    for (let round = 0; round < (count === 100_000 ? ROUNDS : 1); round++) {
      const bare = await bareParse(ours);
      const mine = await startCatalog(ROOT, ours);
      const mineRss = peakRss(mine.child.process.pid);
      await stopCatalog(mine);
      const small = await startCatalog(ROOT, paths.get(1_000)!.ours);
      await stopCatalog(small);
      fixedRatios.push(small.ready / bare.ms);
      // The base clone's start is compared at 100,000 titles only (at 1,000,000 it takes minutes on a busy machine).
      const theirs = base && count === 100_000 ? await startCatalog(BASE!, base) : undefined;
      const theirsRss = theirs && peakRss(theirs.child.process.pid);
      if (theirs) await stopCatalog(theirs);
      ratios.push(mine.ready / bare.ms);
      if (theirs) baseRatios.push(theirs.ready / bare.ms);
      console.log(
        `${label(count)} titles, round ${round + 1}: bare ${Math.round(bare.ms)} ms (peak RSS ${bare.rss} MB), ` +
          `catalog ${Math.round(mine.ready)} ms (peak RSS ${mineRss} MB), of 1,000 titles ${
            Math.round(small.ready)
          } ms` +
          (theirs ? `, base ${Math.round(theirs.ready)} ms (peak RSS ${theirsRss} MB)` : ""),
      );
    }
    console.log(
      `${label(count)} titles: catalog ready / bare parse ${spread(ratios)}` +
        (baseRatios.length ? `; base ready / bare parse ${spread(baseRatios)}` : "") +
        `; a catalog of 1,000 titles ready / this bare parse ${spread(fixedRatios)}`,
    );
  }

  console.log("# searches through Ice, 8 callers, calls/s, rounds interleaved");
  const servers: { name: string; count: number; catalog: IceFlix.MediaCatalogPrx; pid: number }[] = [];
  // The edits below need an Authenticator: the toy one, known to the catalog of 100,000 titles from its start.
  const editIceStorm = await IceStormServer.start();
  const toy = await startService("tests/toy_service.ts", [
    "--ToyAdapter.Endpoints=tcp -h 127.0.0.1",
    editIceStorm.option,
  ]);
  for (const count of [1_000, 100_000, 1_000_000]) {
    const { ours, base } = paths.get(count)!;
    running.push(await startCatalog(ROOT, ours, count === 100_000 ? editIceStorm : undefined));
    servers.push({ name: "catalog", count, catalog: running.at(-1)!.catalog, pid: running.at(-1)!.child.process.pid });
    // It indexes the names after loading (searching them meanwhile): the searches are timed once that is done.
    const { child, ready } = running.at(-1)!;
    if (count > 10_000) {
      await eventually("the names are indexed", () => /names indexed for search/.test(child.stderr), 900);
    }
    console.log(
      `${label(count)} titles: ready in ${Math.round(ready)} ms; ${
        /names indexed for search .*/.exec(child.stderr)?.[0] ?? ""
      }`,
    );
    if (base && count === 100_000) {
      running.push(await startCatalog(BASE!, base));
      servers.push({ name: "base", count, catalog: running.at(-1)!.catalog, pid: running.at(-1)!.child.process.pid });
    }
  }
  const searches = {
    exact: (catalog: IceFlix.MediaCatalogPrx) => catalog.getTilesByName(EXACT_QUERY, true),
    substring: (catalog: IceFlix.MediaCatalogPrx) => catalog.getTilesByName(SUBSTRING_QUERY, false),
    tags: (catalog: IceFlix.MediaCatalogPrx) => catalog.getTilesByTags(TAG_QUERY, false),
  };
  // Calls/s, and the catalog's CPU time per call (µs): the other processes on the machine change the first much
  // more than the second.
  const [rates, costs] = [new Map<string, number[]>(), new Map<string, number[]>()];
  const record = (figures: Map<string, number[]>, key: string, value: number) =>
    figures.set(key, [...figures.get(key) ?? [], value]);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [search, call] of Object.entries(searches)) {
      // Each round in another order, so that none is always timed first (or just after the heaviest).
      for (const [index] of servers.entries()) {
        const { name, count, catalog, pid } = servers[(index + round) % servers.length];
        const found = (await call(catalog)).length;
        const cpu = cpuSeconds(pid);
        const calls = await rate(8, () => call(catalog));
        const cost = Math.round((cpuSeconds(pid) - cpu) * 1e6 / (calls * SECONDS));
        record(rates, `${search} ${name} ${count}`, calls);
        record(costs, `${search} ${name} ${count}`, cost);
        console.log(
          `round ${round + 1}: ${search}, ${name}, ${label(count)} titles (${found} found): ${calls} calls/s, ` +
            `${cost} µs of the catalog's CPU per call`,
        );
      }
    }
  }
  const ratio = (a: string, b: string, figures = rates) => {
    const [x, y] = [figures.get(a)!, figures.get(b)!];
    return spread(x.map((value, round) => value / y[round]));
  };
  for (const search of Object.keys(searches)) {
    for (const [count, text] of [[100000, "100,000"], [1000000, "1,000,000"]]) {
      const [key, small] = [`${search} catalog ${count}`, `${search} catalog 1000`];
      console.log(
        `${search}: ${text} / 1,000 titles ${ratio(key, small)} (CPU per call ${ratio(key, small, costs)})`,
      );
    }
    if (BASE) {
      console.log(
        `${search}: this clone / base, 100,000 titles ${ratio(`${search} catalog 100000`, `${search} base 100000`)}`,
      );
    }
  }

  // Edits through Ice: the token is checked with the toy Authenticator, the reply comes once the edit is durable.
  try {
    const catalog = servers.find((server) => server.name === "catalog" && server.count === 100_000)!.catalog;
    const edits: number[] = [];
    for (let i = 0; i < EDITS; i++) {
      const id = titleId((i * 7919) % 100_000);
      const start = performance.now();
      await (i % 2
        ? catalog.addTags(id, [`bench-${i}`], "toy-token")
        : catalog.renameTile(id, `Bench ${i}`, "toy-token"));
      edits.push(performance.now() - start);
    }
    console.log(`edit until durable, 100,000 titles, through Ice (token check included): ${latencySummary(edits)}`);
  } finally {
    await toy.child.stop();
  }
  for (const server of running.splice(0)) await stopCatalog(server);

  // The same work inside one process: what the server spends per search and per edit.
  console.log("# inside the process (server side)");
  const logger = createLogger("bench", client.getProperties());
  for (const count of [100_000, 1_000_000]) {
    const database = await CatalogDatabase.open(paths.get(count)!.ours, logger);
    const loaded = performance.now();
    await database.whenIndexed();
    console.log(
      `${label(count)} titles: trigram lists filled ${Math.round(performance.now() - loaded)} ms after loading`,
    );
    const time = (work: () => unknown) => {
      const start = performance.now();
      work();
      return performance.now() - start;
    };
    const queries = [SUBSTRING_QUERY, "noche", "a dark 1234", "x", "película sol 99"];
    for (const query of queries) {
      const found = database.findByName(query, false).length;
      const samples = Array.from({ length: 200 }, () => time(() => database.findByName(query, false)));
      console.log(
        `getTilesByName substring "${query}", ${label(count)} titles (${found} found): ${latencySummary(samples)}`,
      );
    }
    const exact = Array.from({ length: 200 }, () => time(() => database.findByName(EXACT_QUERY, true)));
    console.log(`getTilesByName exact, ${label(count)} titles: ${latencySummary(exact, { digits: 3 })}`);
    const tags = Array.from({ length: 200 }, () => time(() => database.findByTags(TAG_QUERY, false)));
    console.log(`getTilesByTags, ${label(count)} titles: ${latencySummary(tags)}`);
    if (count === 100_000) {
      const edits: number[] = [];
      for (let i = 0; i < EDITS; i++) {
        const start = performance.now();
        await database.addTags(titleId((i * 7919) % count), [`local-${i}`]);
        edits.push(performance.now() - start);
      }
      console.log(`edit until durable (journal append + sync), ${label(count)} titles: ${latencySummary(edits)}`);
    }
    // Every database is closed (the 1,000,000 one too), so that none keeps the bench from exiting.
    const closing = performance.now();
    await database.close();
    if (count === 100_000) {
      console.log(
        `journal folded into the JSON file (rewrite of 100,000 titles): ${Math.round(performance.now() - closing)} ms`,
      );
    }
  }
  console.log(`name index memory, 1,000,000 titles: ${await indexMemory(1_000_000)}`);
} finally {
  for (const server of running) await stopCatalog(server);
  await client.destroy();
  await Deno.remove(folder, { recursive: true });
  if (baseFolder) await Deno.remove(baseFolder, { recursive: true });
}
// Every figure is printed, every process it started is stopped and its folders are gone; yet a run stayed alive
// afterwards (no child left, nothing but Deno's own sockets open: something of Ice's or Deno's kept the event loop).
// A benchmark ends when its work is done.
Deno.exit(0);
