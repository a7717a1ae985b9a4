/**
 * The MediaCatalog (issue 4): a real catalog process started with
 * `./run_service catalog`, a real IceStorm, and in this test process a Stream
 * Provider and an Authenticator of the test's own, both reached by the catalog
 * through discovery and real Ice connections.
 */
import assert from "node:assert/strict";
import { Ice } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { CatalogDatabase } from "../catalog_database.ts";
import { Discovery } from "../discovery.ts";
import { EventChannel, TOPICS } from "../events.ts";
import { createLogger, createServiceContext, initializeCommunicator } from "../service.ts";
import { explain } from "../client_text.ts";
import {
  Child,
  eventually,
  IceStormServer,
  ROOT,
  runPython,
  startIceFlixService,
  testCommunicator,
} from "../harness.ts";

/** Short intervals, so that discovery and pruning happen within a test. */
const INTERVAL = "--IceFlix.Discovery.AnnounceInterval=1";
/** The test process logs only warnings and errors. */
const QUIET = "--IceFlix.LogLevel=warn";

/** Title ids as the streaming service makes them (SHA-256 hex); any string works for the catalog. */
const ONE = "1".repeat(64);
const TWO = "2".repeat(64);
const THREE = "3".repeat(64);

/** A test's own folder for database files, inside the project, where `./run_service catalog` may write. */
async function databaseFolder(): Promise<string> {
  await Deno.mkdir(`${ROOT}data`, { recursive: true });
  return await Deno.makeTempDir({ dir: `${ROOT}data`, prefix: "catalog-test-" });
}

/** A StreamProvider servant: it has `media` (id -> name) and announces them when asked to. */
class TestProvider extends IceFlix.StreamProvider {
  readonly media: Map<string, string>;
  readonly #discovery: Discovery;
  readonly #events: EventChannel;

  constructor(discovery: Discovery, events: EventChannel, media: Record<string, string>) {
    super();
    this.#discovery = discovery;
    this.#events = events;
    this.media = new Map(Object.entries(media));
  }

  getStream(): IceFlix.StreamControllerPrx {
    throw new IceFlix.Unauthorized();
  }

  isAvailable(id: string): boolean {
    return this.media.has(id);
  }

  async reannounceMedia(): Promise<void> {
    for (const [id, name] of this.media) await publishNewMedia(this.#events, id, name, this.#discovery.id);
  }
}

/** Publishes `StreamAnnounces.newMedia` on topic MediaAnnouncements, as a streaming service does. */
async function publishNewMedia(events: EventChannel, id: string, name: string, providerId: string): Promise<void> {
  const delivered = await events.publish(
    TOPICS.mediaAnnouncements,
    (publisher) => IceFlix.StreamAnnouncesPrx.uncheckedCast(publisher).newMedia(id, name, providerId),
  );
  assert.ok(delivered, "IceStorm took the announcement");
}

/** An Authenticator servant that accepts the tokens in `tokens` (a test removes one to expire it). */
class TestAuthenticator extends IceFlix.Authenticator {
  readonly tokens = new Set(["good"]);

  refreshAuthorization(): string {
    throw new IceFlix.Unauthorized();
  }

  isAuthorized(authentication: string): boolean {
    return this.tokens.has(authentication);
  }
}

/** A servant of this test process, in a communicator of its own, announced on ServiceAvailability. */
interface TestService<T> {
  servant: T;
  /** Its id in discovery (what newMedia carries as providerId). */
  id: string;
  events: EventChannel;
  /** Stops announcing and destroys its communicator: from now on it is gone, as if its process had died. */
  kill(): Promise<void>;
}

/** Serves the servant `create` makes under identity `name`, and announces it as `kind` on `world`'s IceStorm. */
async function announced<T extends Ice.Object>(
  world: World,
  kind: "auth" | "media",
  name: string,
  create: (discovery: Discovery, events: EventChannel) => T,
): Promise<TestService<T>> {
  const { communicator, adapter } = await testCommunicator([world.icestorm.option, INTERVAL, QUIET]);
  const identity = Ice.stringToIdentity(name);
  const context = await createServiceContext(adapter, createLogger(name, communicator.getProperties()));
  const discovery = new Discovery(context, { kind, proxy: adapter.createProxy(identity) });
  const servant = create(discovery, context.events);
  adapter.add(servant, identity);
  await discovery.start();
  let killed: Promise<void> | undefined;
  return {
    servant,
    id: discovery.id,
    events: context.events,
    kill: () => killed ??= discovery.stop().then(() => context.events.close()).then(() => communicator.destroy()),
  };
}

/** Everything a catalog test runs against; `stop()` ends it all. */
interface World {
  icestorm: IceStormServer;
  communicator: Ice.Communicator;
  folder: string;
  database: string;
  stop(): Promise<void>;
}

async function startWorld(): Promise<World> {
  const icestorm = await IceStormServer.start();
  const communicator = initializeCommunicator([icestorm.option]);
  const folder = await databaseFolder();
  return {
    icestorm,
    communicator,
    folder,
    database: `${folder}/catalog.json`,
    async stop() {
      await communicator.destroy();
      await icestorm.stop();
      await Deno.remove(folder, { recursive: true });
    },
  };
}

/** A catalog process on `world`'s database and IceStorm (and `properties`), and a proxy to it. */
async function startCatalog(world: World, properties: string[] = []) {
  const { child, proxy } = await startIceFlixService("catalog", [
    world.icestorm.option,
    INTERVAL,
    `--IceFlix.Catalog.DatabaseFile=${world.database}`,
    ...properties,
  ]);
  return { child, catalog: IceFlix.MediaCatalogPrx.uncheckedCast(world.communicator.stringToProxy(proxy)) };
}

/** Writes a database file with `titles`. */
/** Whether `catalog` takes an edit with token "good" now (an edit that changes nothing): it has found an Authenticator. */
function acceptsTokens(catalog: IceFlix.MediaCatalogPrx): Promise<boolean> {
  return catalog.addTags(ONE, [], "good").then(() => true, () => false);
}

async function writeDatabase(path: string, titles: Record<string, { name: string; tags: string[] }>): Promise<void> {
  await Deno.writeTextFile(path, JSON.stringify(titles));
}

const sorted = (ids: string[]) => [...ids].sort();

Deno.test("catalog: learns media from providers (also those that announced before it started) and serves tiles from a live one", async () => {
  const world = await startWorld();
  // Provider A announces its media before any catalog runs: nobody hears that.
  const a = await announced(
    world,
    "media",
    "provider-A",
    (d, events) => new TestProvider(d, events, { [ONE]: "Película Uno" }),
  );
  await a.servant.reannounceMedia();
  const { child, catalog } = await startCatalog(world);
  let b: TestService<TestProvider> | undefined;
  try {
    await assert.rejects(
      catalog.getTile("no-such-id"),
      (e) => e instanceof IceFlix.WrongMediaId && e.id === "no-such-id",
    );

    // The catalog discovers A and asks it to reannounce: the title appears, served by A.
    await eventually(
      "the catalog learns A's media",
      async () => (await catalog.getTilesByName("", false)).length === 1,
    );
    const tile = await catalog.getTile(ONE);
    assert.equal(tile.id, ONE);
    assert.deepEqual([tile.info.name, tile.info.tags], ["Película Uno", []]);
    assert.equal(tile.provider.ice_getIdentity().name, "provider-A");

    // Provider B starts and announces ONE under another name, and a new title THREE, through IceStorm.
    b = await announced(
      world,
      "media",
      "provider-B",
      (d, events) => new TestProvider(d, events, { [ONE]: "Another name", [THREE]: "Tercera" }),
    );
    await publishNewMedia(b.events, ONE, "Another name", b.id);
    await publishNewMedia(b.events, THREE, "Tercera", b.id);
    await eventually("B's titles are served by B", async () => {
      const tiles = await Promise.all([catalog.getTile(ONE), catalog.getTile(THREE)]).catch(() => []);
      return tiles.length === 2 && tiles.every((tile) => tile.provider.ice_getIdentity().name === "provider-B");
    });
    assert.equal((await catalog.getTile(ONE)).info.name, "Película Uno", "a known title keeps its name");
    assert.equal((await catalog.getTile(THREE)).info.name, "Tercera", "a new title gets the announced name");

    // B dies: ONE falls back to A, THREE has no live provider left.
    await b.kill();
    assert.equal((await catalog.getTile(ONE)).provider.ice_getIdentity().name, "provider-A");
    await assert.rejects(catalog.getTile(THREE), IceFlix.TemporaryUnavailable);
    // A provider that no longer has the title does not serve it.
    a.servant.media.delete(ONE);
    await assert.rejects(catalog.getTile(ONE), IceFlix.TemporaryUnavailable);

    // Announced titles are in the database: after a restart they are known, without providers.
    assert.equal((await child.stop("SIGTERM")).code, 0);
    const restarted = await startCatalog(world);
    try {
      assert.deepEqual(sorted(await restarted.catalog.getTilesByName("", false)), [ONE, THREE]);
      await assert.rejects(restarted.catalog.getTile(THREE), IceFlix.TemporaryUnavailable);
    } finally {
      await restarted.child.stop();
    }
    const stored = JSON.parse(await Deno.readTextFile(world.database));
    assert.deepEqual(stored, { [ONE]: { name: "Película Uno", tags: [] }, [THREE]: { name: "Tercera", tags: [] } });
  } finally {
    await child.stop();
    await Promise.all([a.kill(), b?.kill()]);
    await world.stop();
  }
});

Deno.test("catalog: searches by name (case-insensitive, Unicode-aware) and by tags (any, all, none)", async () => {
  const world = await startWorld();
  await writeDatabase(world.database, {
    [ONE]: { name: "Película Uno", tags: ["Drama", "clásico"] },
    [TWO]: { name: "PELÍCULA DOS", tags: ["drama", "comedia"] },
    // The í written decomposed (i + combining acute accent): the same text for a reader.
    [THREE]: { name: "La peli\u0301cula de la Straße", tags: ["CLÁSICO"] },
  });
  const { child, catalog } = await startCatalog(world);
  try {
    assert.deepEqual(sorted(await catalog.getTilesByName("película", false)), [ONE, TWO, THREE]);
    assert.deepEqual(await catalog.getTilesByName("película dos", true), [TWO]);
    assert.deepEqual(await catalog.getTilesByName("película", true), [], "exact means the whole name");
    assert.deepEqual(await catalog.getTilesByName("STRASSE", false), [THREE]);
    assert.deepEqual(await catalog.getTilesByName("tres", false), []);

    assert.deepEqual(sorted(await catalog.getTilesByTags(["DRAMA"], false)), [ONE, TWO], "tags ignore case");
    assert.deepEqual(sorted(await catalog.getTilesByTags(["comedia", "clásico"], false)), [ONE, TWO, THREE]);
    assert.deepEqual(await catalog.getTilesByTags(["drama", "clásico"], true), [ONE]);
    assert.deepEqual(await catalog.getTilesByTags(["drama", "western"], true), []);
    assert.deepEqual(await catalog.getTilesByTags([], false), []);
    assert.deepEqual(await catalog.getTilesByTags([], true), []);
  } finally {
    await child.stop();
    await world.stop();
  }
});

Deno.test("catalog: edits need a token an Authenticator accepts now, are durable when they return, survive SIGKILL", async () => {
  const world = await startWorld();
  await writeDatabase(world.database, { [ONE]: { name: "Uno", tags: ["a"] } });
  const auth = await announced(world, "auth", "authenticator", () => new TestAuthenticator());
  let { child, catalog } = await startCatalog(world);
  let provider: TestService<TestProvider> | undefined;
  try {
    await eventually("the catalog accepts the Authenticator's tokens", () => acceptsTokens(catalog));
    await assert.rejects(catalog.renameTile(ONE, "Hacked", "bad-token"), IceFlix.Unauthorized);
    await assert.rejects(catalog.addTags(ONE, ["x"], "bad-token"), IceFlix.Unauthorized);
    await assert.rejects(catalog.removeTags(ONE, ["a"], "bad-token"), IceFlix.Unauthorized);
    for (const edit of [catalog.renameTile(TWO, "x", "good"), catalog.addTags(TWO, ["x"], "good")]) {
      await assert.rejects(edit, (e) => e instanceof IceFlix.WrongMediaId && e.id === TWO);
    }
    await assert.rejects(
      catalog.removeTags(TWO, ["x"], "good"),
      (e) => e instanceof IceFlix.WrongMediaId && e.id === TWO,
    );

    // Asked twice (the catalog keeps the marshalled answer), then renamed: the next answer follows the rename.
    for (let ask = 0; ask < 2; ask++) assert.deepEqual(await catalog.getTilesByName("uno", true), [ONE]);
    await catalog.renameTile(ONE, "Nuevo nombre", "good");
    assert.deepEqual(await catalog.getTilesByName("uno", true), [], "no answer from before the rename");
    assert.deepEqual(await catalog.getTilesByName("nuevo nombre", true), [ONE]);
    // The token expires: the next edit is refused (the catalog asks every time, it does not remember).
    auth.servant.tokens.delete("good");
    await assert.rejects(catalog.addTags(ONE, ["d"], "good"), IceFlix.Unauthorized);
    auth.servant.tokens.add("good");
    await catalog.addTags(ONE, ["b", "B", "c", "a"], "good"); // no duplicates, whatever the case
    await catalog.removeTags(ONE, ["A", "not-there"], "good"); // tags it does not have are ignored

    // Killed right after the last reply, the catalog has every edit when it starts again.
    await child.stop("SIGKILL");
    ({ child, catalog } = await startCatalog(world));
    assert.deepEqual(await catalog.getTilesByName("Nuevo Nombre", true), [ONE]);
    assert.deepEqual(await catalog.getTilesByTags(["B", "C"], true), [ONE]);
    assert.deepEqual(await catalog.getTilesByTags(["a", "d"], false), []);

    // A provider announcing the title under its initial name does not undo the rename.
    provider = await announced(
      world,
      "media",
      "provider",
      (d, events) => new TestProvider(d, events, { [ONE]: "Uno", [TWO]: "Dos" }),
    );
    await eventually(
      "the announcement of TWO arrives",
      async () => (await catalog.getTilesByName("dos", true)).length > 0,
    );
    assert.deepEqual(await catalog.getTilesByName("uno", true), []);

    // With no Authenticator left, edits are refused and the log says why.
    await auth.kill();
    await assert.rejects(catalog.renameTile(ONE, "x", "good"), IceFlix.Unauthorized);
    await eventually(
      "the log says why",
      () => /renameTile refused: no Authenticator could check the token/.test(child.stderr),
    );
    assert.doesNotMatch(child.stderr, /good|bad-token/, "tokens never reach the log");

    // A clean stop leaves the whole catalog in the JSON file.
    assert.equal((await child.stop("SIGTERM")).code, 0);
    const stored = JSON.parse(await Deno.readTextFile(world.database));
    // Edited titles also carry the versions of their edits (for replication); here names and tags are checked.
    for (const title of Object.values(stored)) delete (title as { versions?: unknown }).versions;
    assert.deepEqual(stored, {
      [ONE]: { name: "Nuevo nombre", tags: ["b", "c"] },
      [TWO]: { name: "Dos", tags: [] },
    });
    await assert.rejects(Deno.stat(`${world.database}.journal`), Deno.errors.NotFound);
  } finally {
    await child.stop();
    await Promise.all([auth.kill(), provider?.kill()]);
    await world.stop();
  }
});

Deno.test("catalog: an edit in its first instants waits for the Authenticator to be proven, rather than refuse", async () => {
  const world = await startWorld();
  await writeDatabase(world.database, { [ONE]: { name: "Uno", tags: [] } });
  const auth = await announced(world, "auth", "authenticator", () => new TestAuthenticator());
  const { child, catalog } = await startCatalog(world);
  try {
    // Ready means Main may hand the catalog out: a client's first edit comes now.
    await catalog.addTags(ONE, ["first"], "good");
    assert.deepEqual(await catalog.getTilesByTags(["first"], true), [ONE]);
  } finally {
    await child.stop();
    await auth.kill();
    await world.stop();
  }
});

Deno.test("catalog: concurrent edits to one title lose nothing", async () => {
  const world = await startWorld();
  await writeDatabase(world.database, { [ONE]: { name: "Uno", tags: [] } });
  const auth = await announced(world, "auth", "authenticator", () => new TestAuthenticator());
  let { child, catalog } = await startCatalog(world);
  try {
    await eventually("the catalog accepts the Authenticator's tokens", () => acceptsTokens(catalog));
    const tags = Array.from({ length: 40 }, (_, i) => `tag-${i}`);
    // Every call on its own connection, as from different clients.
    const callers = tags.map((_, i) => catalog.ice_connectionId(`caller-${i}`));
    await Promise.all([
      ...tags.map((tag, i) => IceFlix.MediaCatalogPrx.uncheckedCast(callers[i]).addTags(ONE, [tag], "good")),
      catalog.renameTile(ONE, "Renombrada", "good"),
    ]);
    await child.stop("SIGKILL");
    ({ child, catalog } = await startCatalog(world));
    assert.deepEqual(await catalog.getTilesByTags(tags, true), [ONE], "every tag is there");
    assert.deepEqual(await catalog.getTilesByName("renombrada", true), [ONE]);
  } finally {
    await child.stop();
    await auth.kill();
    await world.stop();
  }
});

Deno.test("catalog: names and tags past the limits are refused in words and change nothing; huge tags cannot break getTile", async () => {
  const world = await startWorld();
  await writeDatabase(world.database, { [ONE]: { name: "Uno", tags: [] }, [TWO]: { name: "Dos", tags: [] } });
  const auth = await announced(world, "auth", "authenticator", () => new TestAuthenticator());
  const provider = await announced(
    world,
    "media",
    "provider",
    (d, events) => new TestProvider(d, events, { [ONE]: "Uno", [TWO]: "Dos" }),
  );
  let { child, catalog } = await startCatalog(world);
  /** What the client says of an edit's failure (the catalog's words, as `./run_client` prints them). */
  const refusal = (edit: PromiseLike<void>) =>
    Promise.resolve(edit).then(() => "accepted", (error) => explain(error, "the catalog service"));
  try {
    await eventually(
      "the catalog finds both services",
      async () => await acceptsTokens(catalog) && await catalog.getTile(ONE).then(() => true, () => false),
    );
    // The attack: two tags of 687 KB made every getTile of the title fail (MemoryLimitException) for every client.
    for (let i = 0; i < 2; i++) {
      assert.equal(
        await refusal(catalog.addTags(ONE, [`${i}`.repeat(687_000)], "good")),
        `the catalog service refused: the tag "${`${i}`.repeat(40)}…" has 687000 characters; at most 64 ` +
          "(IceFlix.Catalog.MaxTagLength)",
      );
    }
    assert.deepEqual((await catalog.getTile(ONE)).info.tags, []);
    assert.equal(
      await refusal(catalog.renameTile(ONE, "n".repeat(256), "good")),
      `the catalog service refused: the name "${"n".repeat(40)}…" has 256 characters; at most 255 ` +
        "(IceFlix.Catalog.MaxNameLength)",
    );
    assert.equal(await refusal(catalog.renameTile(ONE, "n".repeat(255), "good")), "accepted");

    // 50 tags a title: the 51st is refused, whole (no tag of that edit is added); known tags cost nothing.
    const fifty = Array.from({ length: 50 }, (_, i) => `${i}-${"t".repeat(61)}`.slice(0, 64));
    assert.equal(await refusal(catalog.addTags(ONE, fifty, "good")), "accepted");
    assert.equal(
      await refusal(catalog.addTags(ONE, ["one more", fifty[0]], "good")),
      "the catalog service refused: the title would have 51 tags; at most 50 (IceFlix.Catalog.MaxTagsPerTitle)",
    );
    assert.equal(await refusal(catalog.addTags(ONE, [fifty[1].toUpperCase()], "good")), "accepted");
    // Edits at once, each on its own connection, cannot pass the limit together.
    const callers = Array.from(
      { length: 12 },
      (_, i) => IceFlix.MediaCatalogPrx.uncheckedCast(catalog.ice_connectionId(`c${i}`)),
    );
    await Promise.all(
      callers.map((caller, i) =>
        caller.addTags(TWO, Array.from({ length: 10 }, (_, k) => `c${i}-${k}`), "good").catch(() => {})
      ),
    );
    const twoTags = (await catalog.getTile(TWO)).info.tags.length;
    assert.ok(twoTags > 0 && twoTags <= 50, `${twoTags} tags`);

    // Nothing refused reached the disk: after SIGKILL the titles are the same, and the journal holds small lines.
    const journal = await Deno.stat(`${world.database}.journal`);
    assert.ok(journal.size < 20_000, `journal of ${journal.size} bytes`);
    const before = [await catalog.getTile(ONE), await catalog.getTile(TWO)].map(({ info }) => [info.name, info.tags]);
    await child.stop("SIGKILL");
    ({ child, catalog } = await startCatalog(world));
    await eventually("the restarted catalog serves tiles", () => catalog.getTile(ONE).then(() => true, () => false));
    const after = [await catalog.getTile(ONE), await catalog.getTile(TWO)].map(({ info }) => [info.name, info.tags]);
    assert.deepEqual(after, before);
  } finally {
    await child.stop();
    await Promise.all([auth.kill(), provider.kill()]);
    await world.stop();
  }
});

Deno.test("catalog: a search of 100,000 titles answers clients configured as ours; one past the limit is refused in words; neither breaks another client", async () => {
  const world = await startWorld();
  const ids = Array.from({ length: 100_000 }, (_, i) => i.toString(16).padStart(64, "0"));
  await writeDatabase(world.database, Object.fromEntries(ids.map((id, i) => [id, { name: `Título ${i}`, tags: [] }])));
  // A client as ./run_client is (config/common.config), and one with Ice's default 1 MB limit.
  const ours = initializeCommunicator([world.icestorm.option, `--Ice.Config=${ROOT}config/common.config`]);
  let { child, catalog } = await startCatalog(world);
  const reach = (communicator: Ice.Communicator) =>
    IceFlix.MediaCatalogPrx.uncheckedCast(communicator.stringToProxy(world.communicator.proxyToString(catalog)));
  try {
    assert.equal((await reach(ours).getTilesByName("", false)).length, 100_000);
    await assert.rejects(catalog.getTilesByName("", false), Ice.MemoryLimitException, "a 1 MB client fails alone");
    assert.deepEqual(await reach(ours).getTilesByName("título 99999", true), [ids[99_999]]);
    assert.deepEqual(await catalog.getTilesByName("título 7", true), [ids[7]], "and its next call works");

    // A catalog whose messages are smaller than its answer says so, and the connection goes on serving.
    await child.stop();
    ({ child, catalog } = await startCatalog(world, ["--Ice.MessageSizeMax=1024"]));
    const connection = await catalog.ice_getConnection();
    await assert.rejects(
      catalog.getTilesByName("título", false),
      (error) =>
        error instanceof Ice.UnknownException &&
        /the answer holds 100000 titles, more than one message takes \(\d+ KB; Ice.MessageSizeMax is 1024\)/.test(
          error.unknown,
        ),
    );
    assert.deepEqual(await catalog.getTilesByName("título 12345", true), [ids[12_345]]);
    assert.equal(await catalog.ice_getConnection(), connection, "the same connection");
  } finally {
    await child.stop();
    await ours.destroy();
    await world.stop();
  }
});

/** Whether this process may mount a filesystem (root; CI is): the full-disk test needs one of its own. */
const isRoot = Deno.uid() === 0;
if (!isRoot) console.log("catalog full-disk test skipped: it needs root (it mounts a small tmpfs of its own)");

/** Runs `command` with `args`; throws with its stderr if it fails. */
async function run(command: string, ...args: string[]): Promise<void> {
  const output = await new Deno.Command(command, { args, stdout: "null" }).output();
  if (!output.success) throw new Error(`${command} ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
}

/** Fills the filesystem of `path`'s folder with the file `path` until it has no room left. */
async function fill(path: string): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, append: true });
  const block = new Uint8Array(4096);
  try {
    for (;;) await file.write(block);
  } catch (error) {
    if (!/No space left|os error 28/.test(String(error))) throw error;
  }
}

Deno.test({
  name: "catalog: on a full disk an edit it cannot store is refused and changes nothing; reads go on; a restart has " +
    "exactly the acknowledged edits",
  ignore: !isRoot,
  async fn() {
    const world = await startWorld();
    const disk = `${world.folder}/disk`;
    await Deno.mkdir(disk);
    await run("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", disk);
    const full = { ...world, database: `${disk}/catalog.json` };
    // Edits of 40 tags each, until the disk is full: more tags than a title may have by default.
    const manyTags = ["--IceFlix.Catalog.MaxTagsPerTitle=100000"];
    await writeDatabase(full.database, { [ONE]: { name: "Uno", tags: [] } });
    const auth = await announced(world, "auth", "authenticator", () => new TestAuthenticator());
    let { child, catalog } = await startCatalog(full, manyTags);
    const [acknowledged, refused] = [[] as string[], [] as string[]];
    /** Adds a batch of tags named after `label` (a few KB: more than a page of tmpfs); records what came of it. */
    const edit = async (label: string) => {
      const tags = Array.from({ length: 40 }, (_, i) => `${label}-${i}-${"x".repeat(40)}`);
      try {
        await catalog.addTags(ONE, tags, "good");
        acknowledged.push(...tags);
      } catch (error) {
        assert.ok(error instanceof Ice.UnknownException, String(error));
        assert.match(error.unknown, /could not store the edit \(No space left on device.*nothing was changed/);
        refused.push(...tags);
      }
    };
    try {
      await eventually("the catalog accepts the Authenticator's tokens", () => acceptsTokens(catalog));
      await edit("before");
      assert.equal(acknowledged.length, 40);
      const file = await Deno.stat(full.database);

      // The disk fills up: edits go on until one is refused, then a few more while it stays full.
      await fill(`${disk}/filler`);
      for (let i = 0; refused.length === 0 && i < 20; i++) await edit(`filling-${i}`);
      assert.ok(refused.length > 0, "an edit was refused");
      for (let i = 0; i < 5; i++) await edit(`full-${i}`);

      // Reads go on, and show exactly the acknowledged edits: a refused one is not in memory either.
      assert.deepEqual(await catalog.getTilesByTags(acknowledged, true), [ONE]);
      assert.deepEqual(await catalog.getTilesByTags(refused, false), []);
      assert.deepEqual(await catalog.getTilesByName("uno", true), [ONE]);
      const afterFull = await Deno.stat(full.database);
      assert.equal(afterFull.ino, file.ino, "no refused edit turned into a rewrite of the database file");
      assert.equal(afterFull.mtime?.getTime(), file.mtime?.getTime());
      assert.deepEqual([...Deno.readDirSync(disk)].map((entry) => entry.name).sort(), [
        "catalog.json",
        "catalog.json.journal",
        "filler",
      ], "no temporary file left");

      // Killed while the disk is full, it starts again on it (the journal cannot be folded now: it is kept).
      await child.stop("SIGKILL");
      ({ child, catalog } = await startCatalog(full, manyTags));
      assert.deepEqual(await catalog.getTilesByTags(acknowledged, true), [ONE]);
      assert.deepEqual(await catalog.getTilesByTags(refused, false), []);
      assert.deepEqual(await catalog.getTilesByName("uno", true), [ONE]);

      // Room again: edits are stored after the journal's whole lines (a refused one left no part of itself there),
      // and a clean stop folds everything into the file.
      await Deno.remove(`${disk}/filler`);
      await eventually("the catalog accepts the Authenticator's tokens", () => acceptsTokens(catalog));
      await edit("after");
      await child.stop("SIGKILL");
      ({ child, catalog } = await startCatalog(full, manyTags));
      assert.deepEqual(await catalog.getTilesByTags(acknowledged, true), [ONE]);
      assert.deepEqual(await catalog.getTilesByTags(refused, false), []);
      assert.equal((await child.stop("SIGTERM")).code, 0);
      const stored = JSON.parse(await Deno.readTextFile(full.database));
      assert.deepEqual(new Set(stored[ONE].tags), new Set(acknowledged));
      assert.equal(stored[ONE].name, "Uno");
    } finally {
      await child.stop();
      await auth.kill();
      await run("umount", disk);
      await world.stop();
    }
  },
});

Deno.test("catalog database: a new journal and every rename are synced into the folder, the journal removed only after", async () => {
  const folder = await databaseFolder();
  const trace = `${folder}.strace`;
  try {
    // The system calls of a database's life (tests/catalog_sync_probe.ts: open, one edit, close), in order.
    const output = await new Deno.Command("strace", {
      args: [
        ...[
          "-f",
          "-y",
          "-qq",
          "-o",
          trace,
          "-e",
          "trace=openat,rename,renameat,renameat2,fsync,fdatasync,unlinkat,unlink",
        ],
        ...[Deno.execPath(), "run", "-A", `${ROOT}tests/catalog_sync_probe.ts`, folder],
      ],
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    const calls = (await Deno.readTextFile(trace)).split("\n");
    /** Where a call starts: the first line at or after `from` that matches. */
    const start = (pattern: RegExp, from = 0) => {
      const index = calls.findIndex((line, i) => i >= from && pattern.test(line));
      assert.ok(index >= 0, `a call matching ${pattern} after line ${from}`);
      return index;
    };
    /** Where the call that starts at `index` has returned (strace says "resumed" when another thread came between). */
    const end = (index: number) => {
      if (!calls[index].includes("<unfinished ...>")) return index;
      const [pid, name] = [calls[index].split(/\s+/)[0], calls[index].split(/\s+/)[1].split("(")[0]];
      return calls.findIndex((line, i) =>
        i > index && line.startsWith(`${pid} `) && line.includes(`<... ${name} resumed>`)
      );
    };
    const path = folder.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    // A call another thread interrupted is logged in two lines, the first ending "<unfinished ...>".
    const folderSync = new RegExp(`fsync\\(\\d+<${path}>(\\)| <unfinished)`);
    // The journal is created, then the folder synced, before its first line is synced (and acknowledged).
    const created = start(/openat\(.*catalog\.json\.journal", [^)]*O_CREAT/);
    const journalInFolder = start(folderSync, created);
    assert.ok(end(journalInFolder) < start(/fdatasync\(\d+<[^>]*catalog\.json\.journal>/, created));
    // Folding: the new file renamed over the old one, the folder synced, and only then the journal removed.
    const renamed = start(/rename(at2?)?\(.*"[^"]*\/catalog\.json"/);
    const renameInFolder = start(folderSync, end(renamed));
    assert.ok(end(renameInFolder) < start(/unlink(at)?\(.*catalog\.json\.journal"/, renamed));
  } finally {
    await Deno.remove(folder, { recursive: true });
    await Deno.remove(trace).catch(() => {});
  }
});

Deno.test("catalog: a corrupt database (file or journal) is refused, with a clear error, and left untouched", async () => {
  const folder = await databaseFolder();
  const database = `${folder}/catalog.json`;
  const cases: [string, string | undefined, RegExp][] = [
    ['{"a": {"name": "x", "tags": []', undefined, /catalog\.json is not valid JSON/],
    ['["not", "an", "object"]', undefined, /catalog\.json is not a catalog database/],
    ['{"a": {"name": 3, "tags": []}}', undefined, /title "a" must be \{"name": string, "tags": \[string, \.\.\.\]\}/],
    ['{"a": {"name": "x", "tags": [], "year": 1999}}', undefined, /title "a" must be .* and nothing else/],
    ["{}", '["a", {"name": "x", "tags": []}]\nnot json\n["b", {"name": "y", "tags": []}]\n', /journal is not valid/],
  ];
  try {
    for (const [text, journal, error] of cases) {
      await Deno.writeTextFile(database, text);
      if (journal !== undefined) await Deno.writeTextFile(`${database}.journal`, journal);
      const child = new Child(`${ROOT}run_service`, ["catalog", `--IceFlix.Catalog.DatabaseFile=${database}`]);
      const status = await child.wait();
      assert.notEqual(status.code, 0, `refused: ${text}`);
      assert.match(child.stderr, error);
      assert.match(child.stderr, /left untouched/);
      assert.equal(await Deno.readTextFile(database), text, "the file is byte for byte the same");
      if (journal !== undefined) assert.equal(await Deno.readTextFile(`${database}.journal`), journal);
      await Deno.remove(`${database}.journal`).catch(() => {});
    }
    assert.deepEqual([...Deno.readDirSync(folder)].map((entry) => entry.name), ["catalog.json"], "no stray files");
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("catalog database: the journal records what each edit changed, not the whole title; both formats replay", async () => {
  const folder = await databaseFolder();
  const path = `${folder}/catalog.json`;
  const ignore = () => {};
  const quiet = { error: ignore, warn: ignore, info: ignore, debug: ignore };
  try {
    const many = Array.from({ length: 40 }, (_, i) => `tag-${i}-${"x".repeat(50)}`);
    await Deno.writeTextFile(path, JSON.stringify({ [ONE]: { name: "Uno", tags: many } }));
    let database = await CatalogDatabase.open(path, quiet, "replica-a");
    await database.addTags(ONE, ["nuevo"]);
    await database.rename(ONE, "Uno bis");
    await database.removeTags(ONE, ["TAG-0-" + "x".repeat(50)]);
    await database.addTitle(TWO, "Dos");
    const lines = (await Deno.readTextFile(`${path}.journal`)).trimEnd().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(lines, [
      { id: ONE, tags: [["nuevo", 1, "replica-a"]] },
      { id: ONE, name: ["Uno bis", 2, "replica-a"] },
      { id: ONE, removed: [[many[0], 3, "replica-a"]] },
      { id: TWO, name: ["Dos", 0, ""] },
    ]);
    // Tags in the order of the edits that added them; those of the file (never edited) in code-point order.
    const expected = { name: "Uno bis", tags: [...many.slice(1).sort(), "nuevo"] };
    assert.deepEqual(database.info(ONE), expected);

    // Killed now (the journal not folded), plus a whole-title line as journals before changes were recorded had.
    await Deno.writeTextFile(`${path}.journal`, `["${THREE}", {"name": "Tres", "tags": ["old"]}]\n`, { append: true });
    database = await CatalogDatabase.open(path, quiet);
    assert.deepEqual(database.info(ONE), expected);
    assert.deepEqual(database.info(TWO), { name: "Dos", tags: [] });
    assert.deepEqual(database.info(THREE), { name: "Tres", tags: ["old"] });
    assert.deepEqual(database.findByTags([many[0]], false), [], "a removal replayed leaves the index");
    await database.close();
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("catalog database: the journal replays in order, a torn last line (crash while appending) is dropped", async () => {
  const folder = await databaseFolder();
  const path = `${folder}/catalog.json`;
  const warnings: string[] = [];
  const ignore = () => {};
  const logger = { error: ignore, warn: (message: string) => warnings.push(message), info: ignore, debug: ignore };
  try {
    await Deno.writeTextFile(path, JSON.stringify({ [ONE]: { name: "Uno", tags: ["old"] } }));
    await Deno.writeTextFile(
      `${path}.journal`,
      `["${ONE}", {"name": "Uno bis", "tags": ["x"]}]\n["${TWO}", {"name": "Dos", "tags": []}]\n` +
        `["${ONE}", {"name": "Uno ter", "tags": ["y", "z"]}]\n["${THREE}", {"name": "Tr`,
    );
    const database = await CatalogDatabase.open(path, logger);
    assert.deepEqual(database.info(ONE), { name: "Uno ter", tags: ["y", "z"] });
    assert.deepEqual(database.info(TWO), { name: "Dos", tags: [] });
    assert.equal(database.has(THREE), false);
    assert.match(warnings.join("\n"), /ignoring its torn last line/);
    assert.deepEqual(database.findByTags(["old", "x"], false), [], "replaced tags leave the index");
    // Opening folded the journal into the file.
    await assert.rejects(Deno.stat(`${path}.journal`), Deno.errors.NotFound);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), {
      [ONE]: { name: "Uno ter", tags: ["y", "z"] },
      [TWO]: { name: "Dos", tags: [] },
    });
    await database.close();
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("catalog database: substring and tag searches are the same while the indexes fill after loading and after", async () => {
  const folder = await databaseFolder();
  const path = `${folder}/catalog.json`;
  const ignore = () => {};
  const quiet = { error: ignore, warn: ignore, info: ignore, debug: ignore };
  try {
    // More titles than one turn of the background fill takes.
    const titles = Object.fromEntries(
      Array.from(
        { length: 25_000 },
        (_, i) => [i.toString(16).padStart(64, "0"), { name: `Título ${i}`, tags: [`t${i % 5}`, `u${i % 3}`] }],
      ),
    );
    await Deno.writeTextFile(path, JSON.stringify(titles));
    const database = await CatalogDatabase.open(path, quiet);
    // At once, while most titles wait for the indexes (the first turn of the fill took 10,000): what a scan finds.
    assert.equal(database.findByName("TÍTULO 2499", false).length, 11, "titles not in the trigram lists yet too");
    assert.equal(database.findByTags(["T2"], false).length, 5000, "titles not in the tag index yet too");
    assert.equal(database.findByTags(["t2", "U0"], true).length, 1666, "i % 15 === 12");
    // One title among the names indexed at once, one among those that wait, renamed as the lists fill (an edit is
    // applied once it is on disk, a few turns of the event loop later: the fill may have moved on meanwhile).
    const [low, high] = [7, 24_000].map((i) => i.toString(16).padStart(64, "0"));
    await Promise.all([
      database.rename(low, "Renamed while filling"),
      database.rename(high, "Also renamed while filling"),
      database.addTags(low, ["nuevo"]),
      database.removeTags(high, ["T4"]),
      database.addTags(high, ["nuevo"]),
    ]);
    const queries = ["TÍTULO 2499", "ulo 7", "1", "while fill"];
    const tagQueries: [string[], boolean][] = [[["T2"], false], [["nuevo"], false], [["t2", "U0"], true], [
      ["t4", "nuevo"],
      false,
    ], [["t4", "nuevo"], true]];
    const early = queries.map((query) => database.findByName(query, false));
    const earlyTags = tagQueries.map(([tags, all]) => database.findByTags(tags, all));
    assert.deepEqual(early[3], [low, high]);
    assert.equal(early[0].length, 11, "Título 2499 and 24990-24999");
    assert.deepEqual(earlyTags[1], [low, high]);
    assert.equal(earlyTags[0].length, 5000);
    assert.equal(earlyTags[2].length, 1666, "i % 15 === 12");
    assert.equal(earlyTags[4].length, 0, "t4 removed from the title that has nuevo among the t4 ones");
    await database.whenIndexed();
    assert.deepEqual(queries.map((query) => database.findByName(query, false)), early);
    assert.deepEqual(tagQueries.map(([tags, all]) => database.findByTags(tags, all)), earlyTags);
    await database.close();
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("catalog database: titles kept as the file has them read, search, edit, merge, replicate and rewrite as titles read whole do", async () => {
  const folder = await databaseFolder();
  const ignore = () => {};
  const quiet = { error: ignore, warn: ignore, info: ignore, debug: ignore };
  // Tags out of order, repeated in another case, empty, more than a few; an id that is an array index; a title
  // that no edit touches.
  const titles: Record<string, { name: string; tags: string[] }> = {
    [ONE]: { name: "Película Uno", tags: ["zeta", "Alfa", "ALFA", "", "río", "ri\u0301o"] },
    [TWO]: { name: "Dos", tags: [...Array.from({ length: 12 }, (_, i) => `T${11 - i}`), "t3", ""] },
    "7": { name: "SIETE", tags: [] },
    [THREE]: { name: "Tres", tags: ["b", "a", "B"] },
    "ocho": { name: "Ocho", tags: ["y", "X", "x", "a"] },
  };
  // The same titles with empty versions: the database reads those whole as it loads, as it once read every title.
  const whole = Object.fromEntries(Object.entries(titles).map(([id, title]) => [id, { ...title, versions: {} }]));
  const paths = [`${folder}/plain.json`, `${folder}/whole.json`];
  await Deno.writeTextFile(paths[0], JSON.stringify(titles));
  await Deno.writeTextFile(paths[1], JSON.stringify(whole));
  const fill = Promise.withResolvers<void>();
  const databases: CatalogDatabase[] = [];
  for (const path of paths) {
    databases.push(await CatalogDatabase.open(path, quiet, "replica-a"));
    // The indexes wait: the first comparison is of titles not in them yet.
    databases.at(-1)!.indexAfter(fill.promise);
  }
  const [plain, reference] = databases;
  const ids = [...Object.keys(titles), "none"];
  const compare = (when: string) => {
    for (const id of ids) {
      assert.deepEqual(plain.info(id), reference.info(id), `${when}: info of ${id}`);
      assert.deepEqual(plain.versioned(id), reference.versioned(id), `${when}: versions of ${id}`);
    }
    for (const tag of ["alfa", "T3", "RÍO", "t11", "zeta", "x", "nuevo", "", "b"]) {
      for (const all of [false, true]) {
        assert.deepEqual(plain.findByTags([tag, "a"], all), reference.findByTags([tag, "a"], all), `${when}: ${tag}`);
      }
    }
    for (const name of ["uno", "película uno", "s", "siete", "tres", "o"]) {
      for (const exact of [false, true]) {
        assert.deepEqual(plain.findByName(name, exact), reference.findByName(name, exact), `${when}: ${name}`);
      }
    }
    for (const [after, bytes] of [[0, Infinity], [0, 1], [2, 1], [3, Infinity]]) {
      assert.deepEqual(plain.changesSince(after, bytes), reference.changesSince(after, bytes), `${when}: changes`);
    }
  };
  /** The ids that `changesSince(after, bytes)` answers, and its last change. */
  const changes = (after: number, bytes: number) => {
    const { titles, last, complete } = plain.changesSince(after, bytes);
    return { ids: titles.map(([id]) => id), last, complete };
  };
  try {
    compare("as loaded");
    // In the order of the file's object: an array index first.
    assert.deepEqual(changes(0, Infinity), { ids: ["7", ONE, TWO, THREE, "ocho"], last: 5, complete: true });
    assert.deepEqual(changes(2, Infinity), { ids: [TWO, THREE, "ocho"], last: 5, complete: true });
    assert.deepEqual(changes(0, 1), { ids: ["7"], last: 1, complete: false });
    fill.resolve();
    await Promise.all(databases.map((database) => database.whenIndexed()));
    compare("indexed");
    for (const database of databases) {
      await database.addTags(ONE, ["alfa", "Nuevo"]);
      await database.removeTags(TWO, ["t5", "T3"]);
      await database.rename("7", "Siete");
      const version = (counter: number) => ({ counter, replica: "replica-b" });
      await database.merge(THREE, {
        name: "Tres bis",
        nameVersion: version(9),
        tags: [{ tag: "A", present: false, version: version(8) }, { tag: "c", present: true, version: version(7) }],
      });
      await database.addTags(THREE, ["nuevo"]);
    }
    compare("edited");
    assert.deepEqual(plain.findByTags(["T3"], false), [], "a removed tag leaves the index");
    assert.deepEqual(plain.findByTags(["a", "nuevo"], true), [], "so does one a merge removed");
    assert.deepEqual(plain.findByTags(["a"], false), ["ocho"]);
    assert.deepEqual(changes(0, Infinity), { ids: ["ocho", ONE, TWO, "7", THREE], last: 10, complete: true });
    assert.deepEqual(changes(5, Infinity), { ids: [ONE, TWO, "7", THREE], last: 10, complete: true });
    assert.deepEqual(changes(4, 1), { ids: ["ocho"], last: 5, complete: false });
    assert.deepEqual(plain.info(THREE), { name: "Tres bis", tags: ["b", "c", "nuevo"] }, "a plain title merged");
    for (const database of databases) await database.close();
    const [folded, folded2] = await Promise.all(paths.map((path) => Deno.readTextFile(path)));
    assert.equal(folded, folded2, "the journal folded into the same file");
    const reopened = await CatalogDatabase.open(paths[0], quiet);
    assert.deepEqual(ids.map((id) => reopened.info(id)), ids.map((id) => reference.info(id)), "and it reads back");
    await reopened.close();
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("interop: a Python client searches, reads tiles and edits the catalog", async () => {
  const world = await startWorld();
  await writeDatabase(world.database, {
    [ONE]: { name: "Película Uno", tags: ["drama"] },
    [TWO]: { name: "Otra", tags: ["comedia"] },
  });
  const auth = await announced(world, "auth", "authenticator", () => new TestAuthenticator());
  const provider = await announced(
    world,
    "media",
    "provider",
    (d, events) => new TestProvider(d, events, { [ONE]: "x" }),
  );
  const { child, catalog } = await startCatalog(world);
  try {
    await eventually(
      "the catalog finds both services",
      async () => await acceptsTokens(catalog) && await catalog.getTile(ONE).then(() => true, () => false),
    );
    const output = await runPython("catalog_client.py", [world.communicator.proxyToString(catalog), ONE, TWO, "good"]);
    assert.equal(
      output,
      [
        `by name: ${ONE}`,
        `by tags: ${ONE} ${TWO}`,
        "tile: Película Uno ['drama'] provider",
        "unknown: WrongMediaId nope",
        "unavailable: TemporaryUnavailable",
        "bad token: Unauthorized",
        `renamed: ${TWO}`,
        "",
      ].join("\n"),
    );
  } finally {
    await child.stop();
    await Promise.all([auth.kill(), provider.kill()]);
    await world.stop();
  }
});
