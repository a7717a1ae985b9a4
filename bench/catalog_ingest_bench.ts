/**
 * The MediaCatalog's ingest: 100,000 `newMedia` from one streaming service
 * that has proven itself (a provider of this process, holding the
 * installation secret), until the catalog serves every title (all found by
 * a search), beside the time IceStorm takes to deliver the same events to a
 * subscriber that does nothing (a process of its own, Ice for JavaScript as
 * the catalog). The same publisher sends both, a window of calls in flight.
 * Rounds interleave the two; the ratio is a median with its spread.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { Discovery } from "../discovery.ts";
import { EventChannel, TOPICS } from "../events.ts";
import { serveHoldings } from "../media_holdings.ts";
import { createLogger, createServiceContext } from "../service.ts";
import { Child, eventually, IceStormServer, ROOT, scratchDir, testCommunicator } from "../harness.ts";
import { percentile } from "./stats.ts";

const TITLES = Number(Deno.env.get("BENCH_INGEST_TITLES") ?? 100_000);
const ROUNDS = 3;
/** Publishes in flight at once (more made IceStorm time out on a busy machine). */
const WINDOW = 32;
const SECRET = `--IceFlix.Trust.SecretFile=${ROOT}data/installation.key`;
const QUIET = "--IceFlix.LogLevel=warn";

/** The id of title number `i` of round `round` (new ids every round). */
function titleId(round: number, i: number): string {
  return `${round.toString(16).padStart(8, "0")}${i.toString(16).padStart(56, "0")}`;
}

/** Answers are searched for in this many groups of titles (the whole list is over Ice's message size limit). */
const GROUPS = 100;

/** The name of title number `i`: in group `i % GROUPS`, which a substring search for `groupName` finds whole. */
function titleName(i: number): string {
  return `${groupName(i % GROUPS)}${i}`;
}

function groupName(group: number): string {
  return `ingest-${String(group).padStart(2, "0")}-`;
}

if (Deno.args[0] === "null-subscriber") {
  // A subscriber that does nothing but count; it prints its proxy, then one line per `count` events.
  const count = Number(Deno.args[1]);
  const { communicator, adapter } = await testCommunicator([Deno.args[2]]);
  const events = new EventChannel(communicator, createLogger("null", communicator.getProperties()));
  let heard = 0;
  class NullSubscriber extends IceFlix.StreamAnnounces {
    newMedia(): void {
      if (++heard % count === 0) console.log(`heard ${heard}`);
    }
  }
  await events.subscribe(TOPICS.mediaAnnouncements, adapter.addWithUUID(new NullSubscriber()));
  console.log("subscribed");
  await new Promise(() => {});
}

/**
 * The bench's streaming service: it holds the ids it is given, answers for many at once as streaming.ts does
 * (facet IceFlixMedia), and reannounces nothing (the bench publishes).
 */
class BenchProvider extends IceFlix.StreamProvider {
  readonly held = new Set<string>();
  readonly asked = Promise.withResolvers<void>();

  getStream(): IceFlix.StreamControllerPrx {
    throw new IceFlix.Unauthorized();
  }

  isAvailable(id: string): boolean {
    return this.held.has(id);
  }

  reannounceMedia(): void {
    // A catalog asks this of every provider it discovers: the sign that it knows this one.
    this.asked.resolve();
  }
}

/** Publishes `newMedia` for the ids of round `round`, `WINDOW` at a time in flight. */
async function publishAll(events: EventChannel, round: number, providerId: string): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: WINDOW }, async () => {
    while (next < TITLES) {
      const i = next++;
      const delivered = await events.publish(
        TOPICS.mediaAnnouncements,
        (publisher) =>
          IceFlix.StreamAnnouncesPrx.uncheckedCast(publisher).newMedia(titleId(round, i), titleName(i), providerId),
      );
      if (!delivered) throw new Error(`IceStorm did not take newMedia ${i}`);
    }
  }));
}

/** `median (min-max)` of `values`. */
function spread(values: number[]): string {
  return `${percentile(values, 50).toFixed(2)}x (${Math.min(...values).toFixed(2)}-${Math.max(...values).toFixed(2)})`;
}

const folder = await scratchDir("catalog-ingest-bench-");
const running: Child[] = [];
const icestorms: IceStormServer[] = [];
try {
  const ratios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Each round has an IceStorm of its own, so no subscriber of one measurement is left for the next.
    const nullStorm = await IceStormServer.start();
    icestorms.push(nullStorm);
    const nullSubscriber = new Child(Deno.execPath(), [
      ...["run", "--allow-all", import.meta.filename!, "null-subscriber", String(TITLES), nullStorm.option],
    ]);
    running.push(nullSubscriber);
    await nullSubscriber.line(1);
    const nullWorld = await testCommunicator([nullStorm.option, QUIET, SECRET]);
    const nullEvents = new EventChannel(
      nullWorld.communicator,
      createLogger("bench", nullWorld.communicator.getProperties()),
    );
    const nullStarted = performance.now();
    await publishAll(nullEvents, round, "nobody");
    await nullSubscriber.line(2, 600);
    const nullMs = performance.now() - nullStarted;
    await nullEvents.close();
    await nullWorld.communicator.destroy();

    const storm = await IceStormServer.start();
    icestorms.push(storm);
    const { communicator, adapter } = await testCommunicator([storm.option, QUIET, SECRET]);
    const context = await createServiceContext(adapter, createLogger("bench", communicator.getProperties()));
    const identity = Ice.stringToIdentity("bench-provider");
    const discovery = new Discovery(context, { kind: "media", proxy: adapter.createProxy(identity) });
    const provider = new BenchProvider();
    for (let i = 0; i < TITLES; i++) provider.held.add(titleId(round, i));
    adapter.add(provider, identity);
    serveHoldings(adapter, identity, (id) => provider.isAvailable(id));
    await discovery.start();
    const catalog = new Child(`${ROOT}run_service`, [
      ...["catalog", storm.option, QUIET, "--IceFlix.Discovery.AnnounceInterval=1"],
      `--IceFlix.Catalog.DatabaseFile=${folder}/catalog-${round}.json`,
    ]);
    running.push(catalog);
    const catalogPrx = IceFlix.MediaCatalogPrx.uncheckedCast(communicator.stringToProxy(await catalog.line(1)));
    await provider.asked.promise;
    const started = performance.now();
    await publishAll(context.events, round, discovery.id);
    // The last one published is usually among the last served: only then is the whole answer asked for.
    const published = performance.now() - started;
    try {
      await eventually("the last title is served", async () => {
        return (await catalogPrx.getTilesByName(titleName(TITLES - 1), true)).length === 1;
      }, 300);
      for (let group = 0; group < GROUPS; group++) {
        const size = Math.floor(TITLES / GROUPS) + (group < TITLES % GROUPS ? 1 : 0);
        await eventually(
          `group ${group} is served whole`,
          async () => (await catalogPrx.getTilesByName(groupName(group), false)).length === size,
          60,
        );
      }
    } catch (error) {
      throw new Error(`${(error as Error).message}; the catalog's log:\n${catalog.stderr.slice(-3000)}`);
    }
    const catalogMs = performance.now() - started;
    ratios.push(catalogMs / nullMs);
    console.log(
      `round ${round + 1}: ${TITLES.toLocaleString("en")} newMedia delivered to a subscriber that does nothing in ` +
        `${Math.round(nullMs)} ms; served by the catalog in ${Math.round(catalogMs)} ms (published in ${
          Math.round(published)
        } ms)`,
    );
    await catalog.stop();
    await nullSubscriber.stop();
    running.length = 0;
    await discovery.stop();
    await context.events.close();
    await communicator.destroy();
    for (const icestorm of icestorms.splice(0)) await icestorm.stop();
  }
  console.log(
    `${TITLES.toLocaleString("en")} newMedia: served by the catalog / delivered to a null subscriber ${spread(ratios)}`,
  );
} finally {
  for (const child of running) await child.stop();
  for (const icestorm of icestorms) await icestorm.stop();
  await Deno.remove(folder, { recursive: true });
}
