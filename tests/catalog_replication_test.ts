/**
 * Catalog replicas (issue 7): real catalogs started with `./run_service
 * catalog`, each on its own database file, a real IceStorm, real streaming
 * services (`./run_service streaming`) and the toy Authenticator. Events are
 * forged by publishing on IceStorm from this test process.
 */
import assert from "node:assert/strict";
import { Ice } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
// @ts-types="../slice/catalog_replication.d.ts"
import { IceFlixCatalogReplication } from "../slice/catalog_replication.js";
import { CatalogDatabase, type VersionedTitle } from "../catalog_database.ts";
import { EventChannel, TOPICS } from "../events.ts";
import { createLogger, initializeCommunicator } from "../service.ts";
import { Child, eventually, IceStormServer, ROOT, scratchDir, startIceFlixService, startService } from "../harness.ts";

/** Short intervals, so that discovery and the replicas' periodic pulls happen within a test. */
const INTERVAL = "--IceFlix.Discovery.AnnounceInterval=1";
/** The only token the toy Authenticator accepts. */
const TOKEN = "toy-token";
/** The samples ./setup makes in media/. */
const SAMPLES = ["test_pattern.mp4", "bouncing_ball.webm"];

/** The lowercase hex SHA-256 of a file: the id a streaming service gives it. */
async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** A catalog process, its proxy and its database file. */
interface Catalog {
  child: Child;
  catalog: IceFlix.MediaCatalogPrx;
  file: string;
}

/** IceStorm, the toy Authenticator and a folder under data/ with a copy of `files` from media/; `stop()` ends it all. */
class World {
  readonly icestorm: IceStormServer;
  readonly communicator: Ice.Communicator;
  readonly folder: string;
  readonly #children: Child[] = [];

  private constructor(icestorm: IceStormServer, folder: string) {
    this.icestorm = icestorm;
    this.folder = folder;
    this.communicator = initializeCommunicator([icestorm.option]);
  }

  static async start(files: string[]): Promise<World> {
    const folder = await scratchDir("catalog-replication-test-");
    await Deno.mkdir(`${folder}/media`);
    for (const file of files) await Deno.copyFile(`${ROOT}media/${file}`, `${folder}/media/${file}`);
    const world = new World(await IceStormServer.start(), folder);
    const toy = await startService("tests/toy_service.ts", [
      "--ToyAdapter.Endpoints=tcp -h 127.0.0.1",
      world.icestorm.option,
      INTERVAL,
    ]);
    world.#children.push(toy.child);
    return world;
  }

  /** The id of media file `file`. */
  id(file: string): Promise<string> {
    return sha256(`${this.folder}/media/${file}`);
  }

  /** Starts a catalog on database `<folder>/<name>.json`; resolves when it is ready (has caught up). */
  async catalog(name: string, properties: string[] = []): Promise<Catalog> {
    const file = `${this.folder}/${name}.json`;
    const { child, proxy } = await startIceFlixService("catalog", [
      this.icestorm.option,
      INTERVAL,
      `--IceFlix.Catalog.DatabaseFile=${file}`,
      ...properties,
    ]);
    this.#children.push(child);
    return { child, catalog: IceFlix.MediaCatalogPrx.uncheckedCast(this.communicator.stringToProxy(proxy)), file };
  }

  /** Starts a streaming service on the world's media folder. */
  async streaming(): Promise<{ child: Child; provider: IceFlix.StreamProviderPrx }> {
    const { child, proxy } = await startIceFlixService("streaming", [
      this.icestorm.option,
      INTERVAL,
      `--IceFlix.Streaming.MediaDir=${this.folder}/media`,
    ]);
    this.#children.push(child);
    return { child, provider: IceFlix.StreamProviderPrx.uncheckedCast(this.communicator.stringToProxy(proxy)) };
  }

  async stop(): Promise<void> {
    await Promise.all(this.#children.map((child) => child.stop()));
    await this.communicator.destroy();
    await this.icestorm.stop();
    await Deno.remove(this.folder, { recursive: true });
  }
}

/** Waits until `catalog` accepts edits (it has found the Authenticator). */
async function canEdit({ child }: Catalog): Promise<void> {
  await eventually("the catalog finds the Authenticator", () => /auth service \S+ found/.test(child.stderr));
}

/**
 * Everything a client can see in a catalog: every title (`getTilesByName("")`)
 * with its tile's name and tags, by id. Waits while a tile has no provider
 * yet (the catalog has not discovered the streaming service).
 */
async function contents({ catalog }: Catalog): Promise<[string, string, string[]][]> {
  const ids = (await catalog.getTilesByName("", false)).sort();
  let tiles: IceFlix.Media[] = [];
  await eventually("every tile has a provider", async () => {
    tiles = await Promise.all(ids.map((id) => catalog.getTile(id))).catch(() => []);
    return tiles.length === ids.length;
  });
  return tiles.map((tile) => [tile.id, tile.info.name, tile.info.tags]);
}

/** A database file's titles. */
async function stored(file: string): Promise<Record<string, { name: string; tags: string[]; versions?: unknown }>> {
  return JSON.parse(await Deno.readTextFile(file));
}

/** `catalog`'s proxy on its own connection: calls made through different ones run concurrently, as from two clients. */
function caller(catalog: IceFlix.MediaCatalogPrx, name: string): IceFlix.MediaCatalogPrx {
  return IceFlix.MediaCatalogPrx.uncheckedCast(catalog.ice_connectionId(name));
}

Deno.test("replicas: an edit is on every replica when it returns; a late or restarted replica catches up before it answers", async () => {
  const world = await World.start(SAMPLES);
  try {
    const [pattern, ball] = await Promise.all(SAMPLES.map((file) => world.id(file)));
    await world.streaming();
    const a = await world.catalog("a");
    await eventually(
      "A learns the provider's media",
      async () => (await a.catalog.getTilesByName("", false)).length === 2,
    );
    await canEdit(a);
    await a.catalog.renameTile(pattern, "Patrón", TOKEN);

    // B starts with no database: the rename, which only A knows, is there from B's first answer.
    let b = await world.catalog("b");
    assert.deepEqual(await b.catalog.getTilesByName("patrón", true), [pattern]);

    // Each edit on A is on B when A replies, and the other way round.
    await a.catalog.renameTile(pattern, "Patrón de prueba", TOKEN);
    assert.deepEqual(await b.catalog.getTilesByName("patrón de prueba", true), [pattern]);
    await a.catalog.addTags(pattern, ["prueba", "vídeo"], TOKEN);
    assert.deepEqual(await b.catalog.getTilesByTags(["PRUEBA", "vídeo"], true), [pattern]);
    await a.catalog.removeTags(pattern, ["prueba"], TOKEN);
    assert.deepEqual(await b.catalog.getTilesByTags(["prueba"], false), []);
    await canEdit(b);
    await b.catalog.addTags(ball, ["pelota"], TOKEN);
    assert.deepEqual(await a.catalog.getTilesByTags(["pelota"], false), [ball]);

    // B stops; A goes on editing.
    assert.equal((await b.child.stop()).code, 0);
    await a.catalog.renameTile(ball, "Pelota", TOKEN);
    await a.catalog.addTags(pattern, ["nuevo"], TOKEN);

    // C starts late, with no database, and B again, with its old file: both have every edit from their first answer.
    const c = await world.catalog("c");
    b = await world.catalog("b");
    for (const replica of [b, c]) {
      assert.deepEqual(await replica.catalog.getTilesByName("pelota", true), [ball]);
      assert.deepEqual(await replica.catalog.getTilesByTags(["vídeo", "nuevo"], true), [pattern]);
    }
    let expected = [
      [pattern, "Patrón de prueba", ["vídeo", "nuevo"]],
      [ball, "Pelota", ["pelota"]],
    ].sort();
    for (const replica of [a, b, c]) assert.deepEqual(await contents(replica), expected);

    // C dies (SIGKILL): edits go on, and reach the live replicas.
    await c.child.stop("SIGKILL");
    await a.catalog.addTags(ball, ["roja"], TOKEN);
    assert.deepEqual(await b.catalog.getTilesByTags(["roja"], false), [ball]);

    // B hangs (SIGSTOP): an edit waits for it no longer than the call timeout, and B catches up once it resumes.
    b.child.process.kill("SIGSTOP");
    try {
      const hung = new Promise((_, reject) => setTimeout(() => reject(new Error("the edit hangs")), 15_000));
      await Promise.race([a.catalog.renameTile(ball, "Pelota roja", TOKEN), hung]);
    } finally {
      b.child.process.kill("SIGCONT");
    }
    await eventually("B catches up", async () => (await b.catalog.getTilesByName("pelota roja", true)).length > 0);
    expected = [
      [pattern, "Patrón de prueba", ["vídeo", "nuevo"]],
      [ball, "Pelota roja", ["pelota", "roja"]],
    ].sort();
    for (const replica of [a, b]) assert.deepEqual(await contents(replica), expected);

    // Anyone can call a replica's `changed`: one not signed by a replica of this installation is refused.
    const name = world.communicator.proxyToString(b.catalog);
    const replica = IceFlixCatalogReplication.CatalogReplicaPrx.uncheckedCast(
      b.catalog.ice_identity(new Ice.Identity(name, "CatalogReplica")),
    );
    await assert.rejects(
      replica.changed("MediaCatalog:tcp -h 127.0.0.1 -p 9", new Uint8Array(56)),
      IceFlixCatalogReplication.Refused,
    );
    assert.deepEqual(await contents(b), expected);
  } finally {
    await world.stop();
  }
});

Deno.test("replicas: concurrent edits converge to the same titles everywhere, kept across restarts; edits made apart meet", async () => {
  const world = await World.start(SAMPLES);
  try {
    const [pattern, ball] = await Promise.all(SAMPLES.map((file) => world.id(file)));
    await world.streaming();
    let a = await world.catalog("a");
    let b = await world.catalog("b");
    await Promise.all([a, b].map(canEdit));
    await eventually("the titles are known", async () => (await b.catalog.getTilesByName("", false)).length === 2);
    await a.catalog.addTags(ball, ["compartida"], TOKEN);

    // The same titles edited on A and on B at once, each call on its own connection.
    const edits: PromiseLike<void>[] = [];
    for (let i = 0; i < 8; i++) {
      edits.push(caller(a.catalog, `a${i}`).addTags(pattern, [`a-${i}`], TOKEN));
      edits.push(caller(b.catalog, `b${i}`).addTags(pattern, [`b-${i}`], TOKEN));
    }
    edits.push(caller(a.catalog, "rename").renameTile(ball, "Nombre de A", TOKEN));
    edits.push(caller(b.catalog, "rename").renameTile(ball, "Nombre de B", TOKEN));
    edits.push(caller(a.catalog, "remove").removeTags(ball, ["compartida"], TOKEN));
    edits.push(caller(b.catalog, "remove").removeTags(ball, ["COMPARTIDA"], TOKEN));
    await Promise.all(edits);

    // Every edit was acknowledged once both replicas had it: they hold the same titles now.
    const [onA, onB] = [await contents(a), await contents(b)];
    assert.deepEqual(onA, onB);
    const titles = new Map(onA.map(([id, name, tags]) => [id, { name, tags }]));
    const everyTag = Array.from({ length: 8 }, (_, i) => [`a-${i}`, `b-${i}`]).flat();
    assert.deepEqual([...titles.get(pattern)!.tags].sort(), everyTag.sort(), "concurrent addTags all survive");
    assert.ok(["Nombre de A", "Nombre de B"].includes(titles.get(ball)!.name), "one of the two renames wins");
    assert.deepEqual(titles.get(ball)!.tags, []);

    // Stopped, both files hold the same titles with the same versions; restarted, the replicas show them again.
    await Promise.all([a.child.stop(), b.child.stop()]);
    assert.deepEqual(await stored(a.file), await stored(b.file));
    assert.ok((await stored(a.file))[pattern].versions, "the versions are stored");
    a = await world.catalog("a");
    await canEdit(a);
    assert.deepEqual(await contents(a), onA);

    // A alone takes an edit and stops; B, started alone on its older file, takes another.
    await a.catalog.addTags(pattern, ["solo-a"], TOKEN);
    await a.child.stop();
    b = await world.catalog("b");
    await canEdit(b);
    assert.deepEqual(await b.catalog.getTilesByTags(["solo-a"], false), [], "B has not seen A's edit");
    await b.catalog.renameTile(pattern, "Solo B", TOKEN);

    // A comes back: it has B's edit from its first answer, and B gets A's edit from A.
    a = await world.catalog("a");
    assert.deepEqual(await a.catalog.getTilesByName("solo b", true), [pattern]);
    await eventually("B pulls A's edit", async () => (await b.catalog.getTilesByTags(["solo-a"], false)).length === 1);
    assert.deepEqual(await contents(a), await contents(b));
  } finally {
    await world.stop();
  }
});

Deno.test("replicas: two catalogs started together, each with titles of its own, meet without waiting on each other", async () => {
  const world = await World.start([]);
  try {
    const [one, two] = ["1".repeat(64), "2".repeat(64)];
    await Deno.writeTextFile(`${world.folder}/x.json`, JSON.stringify({ [one]: { name: "Uno", tags: [] } }));
    await Deno.writeTextFile(`${world.folder}/y.json`, JSON.stringify({ [two]: { name: "Dos", tags: [] } }));
    const [x, y] = await Promise.all([world.catalog("x"), world.catalog("y")]);
    for (const { catalog } of [x, y]) {
      await eventually("each has both titles", async () => (await catalog.getTilesByName("", false)).length === 2);
    }
    assert.doesNotMatch(x.child.stderr + y.child.stderr, /gone/, "neither timed out waiting for the other");
  } finally {
    await world.stop();
  }
});

Deno.test("catalog: forged newMedia are ignored; a file on two providers is one title, served by the live one", async () => {
  const world = await World.start([SAMPLES[0]]);
  const events = new EventChannel(world.communicator, createLogger("test", world.communicator.getProperties()));
  try {
    const id = await world.id(SAMPLES[0]);
    // At debug level the catalog logs every announcement it ignores.
    const k = await world.catalog("k", ["--IceFlix.LogLevel=debug"]);
    const endpoints = (proxy: Ice.ObjectPrx) => proxy.ice_getEndpoints().map(String).join();
    const servedBy = async () => endpoints((await k.catalog.getTile(id)).provider!);

    // Two streaming services on the same folder: the title is served by the one that announced it last.
    const first = await world.streaming();
    await eventually(
      "the first provider serves the title",
      async () => await servedBy().then((by) => by === endpoints(first.provider), () => false),
    );
    const second = await world.streaming();
    await eventually(
      "the second provider serves the title",
      async () => await servedBy().then((by) => by === endpoints(second.provider), () => false),
    );
    assert.deepEqual(await k.catalog.getTilesByName("", false), [id], "the same file is one title");

    // Forged announcements: from a provider id nobody announced, and from a real provider for media it does not have.
    const providerId = /media service (\S+) found/.exec(k.child.stderr)![1];
    const [unknownProvider, notHeld] = ["e".repeat(64), "f".repeat(64)];
    for (const [media, provider] of [[unknownProvider, "no-such-provider"], [notHeld, providerId]]) {
      const delivered = await events.publish(
        TOPICS.mediaAnnouncements,
        (publisher) => IceFlix.StreamAnnouncesPrx.uncheckedCast(publisher).newMedia(media, "Falsa", provider),
      );
      assert.ok(delivered);
    }
    await eventually(
      "the catalog has looked at both",
      () =>
        k.child.stderr.includes(
          `ignoring newMedia ${unknownProvider} from no-such-provider: not a streaming service`,
        ) &&
        k.child.stderr.includes(
          `ignoring newMedia ${notHeld} from ${providerId}: the provider says it does not have it`,
        ),
    );
    assert.deepEqual(await k.catalog.getTilesByName("falsa", false), []);
    for (const media of [unknownProvider, notHeld]) {
      await assert.rejects(k.catalog.getTile(media), IceFlix.WrongMediaId);
    }

    // The provider serving the title dies: the next getTile gives the other one.
    await second.child.stop("SIGKILL");
    assert.equal(await servedBy(), endpoints(first.provider));
    await first.child.stop("SIGKILL");
    await assert.rejects(k.catalog.getTile(id), IceFlix.TemporaryUnavailable);
  } finally {
    await events.close();
    await world.stop();
  }
});

Deno.test("catalog database: merging is idempotent and commutes, the later version wins, a file without versions loads", async () => {
  const folder = await scratchDir("catalog-merge-test-");
  const ignore = () => {};
  const quiet = { error: ignore, warn: ignore, info: ignore, debug: ignore };
  const id = "1".repeat(64);
  /** Every title of `database` with its versions, tags in one order, to compare replicas. */
  const everything = (database: CatalogDatabase) =>
    database.changesSince(0, Infinity).titles.map(([id, title]): [string, VersionedTitle] => [
      id,
      { ...title, tags: [...title.tags].sort((x, y) => x.tag < y.tag ? -1 : 1) },
    ]);
  try {
    // Two replicas start from the same file, written before versions existed.
    const legacy = JSON.stringify({ [id]: { name: "Uno", tags: ["viejo"] } });
    await Deno.writeTextFile(`${folder}/a.json`, legacy);
    await Deno.writeTextFile(`${folder}/b.json`, legacy);
    const a = await CatalogDatabase.open(`${folder}/a.json`, quiet, "replica-a");
    const b = await CatalogDatabase.open(`${folder}/b.json`, quiet, "replica-b");
    assert.deepEqual(a.info(id), { name: "Uno", tags: ["viejo"] });

    // Concurrent edits: both rename (Lamport counter 1 on each), each adds its own tag, A removes the old one.
    await a.rename(id, "Nombre de A");
    await a.addTags(id, ["de-a"]);
    await a.removeTags(id, ["VIEJO"]);
    await b.rename(id, "Nombre de B");
    await b.addTags(id, ["de-b", "viejo"]);

    // B's changes reach A twice (the second time changes nothing); A's reach B.
    for (const [title, state] of everything(b)) {
      assert.equal(await a.merge(title, state), true);
      assert.equal(await a.merge(title, state), false, "merging again changes nothing");
    }
    for (const [title, state] of everything(a)) await b.merge(title, state);
    // Equal counters: the greater replica id wins the name. Each added tag survives; the removal is the later edit.
    assert.deepEqual(a.info(id), { name: "Nombre de B", tags: ["de-a", "de-b"] });
    assert.deepEqual(everything(a), everything(b));

    // The versions are in the file: reopened, A has the same titles, and its next edit is later than all of them.
    await a.close();
    const reopened = await CatalogDatabase.open(`${folder}/a.json`, quiet, "replica-a2");
    assert.deepEqual(everything(reopened), everything(b));
    await reopened.rename(id, "Después");
    for (const [title, state] of everything(reopened)) await b.merge(title, state);
    assert.equal(b.info(id)!.name, "Después");
    await Promise.all([reopened.close(), b.close()]);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});
