/**
 * The MediaCatalog at scale: start-up time, getTilesByName and getTilesByTags
 * calls/s with 1 and 8 callers on 1,000 and 100,000 titles, the same searches
 * timed inside the process (server side), and edit latency (p50/p99) until
 * the edit is durable, through Ice and inside the process.
 *
 * @module
 */
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { CatalogDatabase } from "../catalog_database.ts";
import { createLogger, initializeCommunicator } from "../service.ts";
import { IceStormServer, ROOT, startIceFlixService, startService } from "../tests/harness.ts";
import { latencySummary } from "./stats.ts";

const SECONDS = 2;
const EDITS = 300;
const WORDS = ["noche", "película", "river", "dark", "light", "ciudad", "blue", "rojo", "story", "king", "mar", "sol"];
const TAGS = 1000;
const NAME_QUERY = "RIVER 77"; // a few dozen to a few hundred titles
const TAG_QUERY = ["tag-7", "tag-11"]; // any of two tags: about 0.6% of the titles

/** A database file with `count` titles, three tags each. */
async function writeDatabase(path: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = i.toString(16).padStart(64, "0");
    const name = `${WORDS[i % 12]} ${WORDS[(i * 7 + 3) % 12]} ${i}`;
    const tags = [0, 1, 2].map((k) => `tag-${(i * (k * 2 + 3) + k) % TAGS}`);
    ids.push(id);
    lines.push(`  ${JSON.stringify(id)}: ${JSON.stringify({ name, tags })}`);
  }
  await Deno.writeTextFile(path, `{\n${lines.join(",\n")}\n}\n`);
  return ids;
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

await Deno.mkdir(`${ROOT}data`, { recursive: true });
const folder = await Deno.makeTempDir({ dir: `${ROOT}data`, prefix: "catalog-bench-" });
const icestorm = await IceStormServer.start();
const options = [icestorm.option, "--IceFlix.LogLevel=info"];
const toy = await startService("tests/toy_service.ts", ["--ToyAdapter.Endpoints=tcp -h 127.0.0.1", ...options]);
const client = initializeCommunicator([]);
try {
  for (const count of [1_000, 100_000]) {
    const label = count.toLocaleString("en");
    const path = `${folder}/catalog-${count}.json`;
    const ids = await writeDatabase(path, count);

    const started = performance.now();
    const { child, proxy } = await startIceFlixService("catalog", [
      ...options,
      `--IceFlix.Catalog.DatabaseFile=${path}`,
    ]);
    const loading = / loaded from .* in (\d+) ms/.exec(child.stderr)?.[1];
    console.log(
      `start-up with ${label} titles: ${Math.round(performance.now() - started)} ms to ready (${loading} ms loading)`,
    );
    const catalog = IceFlix.MediaCatalogPrx.uncheckedCast(client.stringToProxy(proxy));
    const found = [(await catalog.getTilesByName(NAME_QUERY, false)).length];
    found.push((await catalog.getTilesByTags(TAG_QUERY, false)).length);
    for (const callers of [1, 8]) {
      const byName = await rate(callers, () => catalog.getTilesByName(NAME_QUERY, false));
      console.log(`getTilesByName, ${label} titles (${found[0]} found), ${callers} caller(s): ${byName} calls/s`);
      const byTags = await rate(callers, () => catalog.getTilesByTags(TAG_QUERY, false));
      console.log(`getTilesByTags, ${label} titles (${found[1]} found), ${callers} caller(s): ${byTags} calls/s`);
    }

    // Edits through Ice: the token is checked with the toy Authenticator, the reply comes once the edit is durable.
    const edits: number[] = [];
    for (let i = 0; i < EDITS; i++) {
      const id = ids[(i * 7919) % ids.length];
      const start = performance.now();
      await (i % 2
        ? catalog.addTags(id, [`bench-${i}`], "toy-token")
        : catalog.renameTile(id, `Bench ${i}`, "toy-token"));
      edits.push(performance.now() - start);
    }
    console.log(`edit until durable, ${label} titles, through Ice (token check included): ${latencySummary(edits)}`);
    await child.stop();
  }

  // The same work inside one process: what the server spends per search and per edit.
  const logger = createLogger("bench", client.getProperties());
  const database = await CatalogDatabase.open(`${folder}/catalog-100000.json`, logger);
  const time = (work: () => unknown) => {
    const start = performance.now();
    work();
    return performance.now() - start;
  };
  const names = Array.from({ length: 200 }, () => time(() => database.findByName(NAME_QUERY, false)));
  console.log(`server side getTilesByName, 100,000 titles: ${latencySummary(names)}`);
  const tags = Array.from({ length: 200 }, () => time(() => database.findByTags(TAG_QUERY, false)));
  console.log(`server side getTilesByTags, 100,000 titles: ${latencySummary(tags)}`);
  const edits: number[] = [];
  for (let i = 0; i < EDITS; i++) {
    const start = performance.now();
    await database.addTags(((i * 7919) % 100_000).toString(16).padStart(64, "0"), [`local-${i}`]);
    edits.push(performance.now() - start);
  }
  console.log(`server side edit until durable (journal append + sync), 100,000 titles: ${latencySummary(edits)}`);
  const start = performance.now();
  await database.close();
  console.log(
    `journal folded into the JSON file (rewrite of 100,000 titles): ${Math.round(performance.now() - start)} ms`,
  );
} finally {
  await client.destroy();
  await toy.child.stop();
  await icestorm.stop();
  await Deno.remove(folder, { recursive: true });
}
