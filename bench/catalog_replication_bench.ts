/**
 * Catalog replication, with two real `./run_service catalog` replicas A and
 * B: the replication lag of an edit (from sending it to A until a client of B
 * sees it, p50/p99), how long A takes to acknowledge it (on disk on A and on
 * B), and how long a new replica takes to catch up with 100,000 titles before
 * it is ready.
 *
 * @module
 */
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { initializeCommunicator } from "../service.ts";
import { eventually, IceStormServer, scratchDir, startIceFlixService, startService } from "../harness.ts";
import { latencySummary } from "./stats.ts";

const EDITS = 300;
const TITLES = 1_000;
const MANY_TITLES = 100_000;

/** A database file with `count` titles, two tags each; returns their ids. */
async function writeDatabase(path: string, count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => i.toString(16).padStart(64, "0"));
  const lines = ids.map((id, i) =>
    `  ${JSON.stringify(id)}: ${JSON.stringify({ name: `title ${i}`, tags: [`t${i % 100}`, "x"] })}`
  );
  await Deno.writeTextFile(path, `{\n${lines.join(",\n")}\n}\n`);
  return ids;
}

const folder = await scratchDir("catalog-replication-bench-");
const icestorm = await IceStormServer.start();
const options = [icestorm.option, "--IceFlix.LogLevel=info"];
const toy = await startService("tests/toy_service.ts", ["--ToyAdapter.Endpoints=tcp -h 127.0.0.1", ...options]);
const client = initializeCommunicator([]);
const startCatalog = async (file: string) => {
  const { child, proxy } = await startIceFlixService("catalog", [...options, `--IceFlix.Catalog.DatabaseFile=${file}`]);
  return { child, catalog: IceFlix.MediaCatalogPrx.uncheckedCast(client.stringToProxy(proxy)) };
};
try {
  const ids = await writeDatabase(`${folder}/a.json`, TITLES);
  const a = await startCatalog(`${folder}/a.json`);
  const b = await startCatalog(`${folder}/b.json`);
  await eventually("A finds the Authenticator", () => /auth service \S+ found/.test(a.child.stderr));

  // Each rename gets a name of its own; B is asked for it, again and again, from the moment it is sent to A.
  const lags: number[] = [];
  const acks: number[] = [];
  for (let i = 0; i < EDITS; i++) {
    const [id, name] = [ids[(i * 7919) % ids.length], `replicated ${i}`];
    const start = performance.now();
    const edit = a.catalog.renameTile(id, name, "toy-token").then(() => acks.push(performance.now() - start));
    while ((await b.catalog.getTilesByName(name, true)).length === 0);
    lags.push(performance.now() - start);
    await edit;
  }
  console.log(
    `replication lag, edit sent to A until visible on B, ${TITLES.toLocaleString("en")} titles: ${
      latencySummary(lags)
    }`,
  );
  console.log(
    `edit acknowledged by A (on disk on A and on B), ${TITLES.toLocaleString("en")} titles: ${latencySummary(acks)}`,
  );
  await Promise.all([a.child.stop(), b.child.stop()]);

  await writeDatabase(`${folder}/many.json`, MANY_TITLES);
  const many = await startCatalog(`${folder}/many.json`);
  const started = performance.now();
  const late = await startCatalog(`${folder}/late.json`);
  const label = MANY_TITLES.toLocaleString("en");
  console.log(`new replica catching up with ${label} titles: ${Math.round(performance.now() - started)} ms to ready`);
  // One tag in a hundred: the whole list of ids would not fit in one Ice message.
  const tagged = (await late.catalog.getTilesByTags(["t7"], false)).length;
  console.log(`titles tagged t7 on the new replica when ready: ${tagged} (of ${MANY_TITLES / 100})`);
  await Promise.all([many.child.stop(), late.child.stop()]);
} finally {
  await client.destroy();
  await toy.child.stop();
  await icestorm.stop();
  await Deno.remove(folder, { recursive: true });
}
