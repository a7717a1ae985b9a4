/**
 * The web client (issue 12): the streaming service's HTTP server and its
 * `HttpStreaming` facet, with real IceStorm, a real Authenticator and real
 * HTTP requests; then the page itself in Debian's Chromium, driven by
 * playwright-core, through a real Glacier2 router to the four services.
 */
import assert from "node:assert/strict";
import { Ice } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
// @ts-types="../slice/web.d.ts"
import { IceFlixWeb } from "../slice/web.js";
import { EventChannel } from "../events.ts";
import { HTTP_STREAMING_FACET } from "../http_streaming.ts";
import { sha256File } from "../streaming.ts";
import { createLogger } from "../service.ts";
import { sha256Hex } from "../users.ts";
import { currentTime, logIn, openPage, type Page, select, state, videoProperty } from "./web_page.ts";
import {
  Child,
  eventually,
  freePort,
  IceStormServer,
  ROOT,
  scratchDir,
  startIceFlixService,
  testCommunicator,
  waitForPort,
  writeUsersFile,
} from "../harness.ts";

// `deno test` alone does not run ./setup, which bundles web/app.ts into the web/app.js the page loads: without this, an
// edit of the page would be tested on its old bundle. ./setup only checks when the bundle is current (a second).
const setUp = await new Deno.Command(`${ROOT}setup`, { stdout: "inherit", stderr: "inherit" }).output();
assert.ok(setUp.success, "./setup failed");

const MP4 = `${ROOT}media/test_pattern.mp4`;
const WEBM = `${ROOT}media/bouncing_ball.webm`;

/** Renews its stream's token whenever the controller asks, as a client does. */
class Renewer extends IceFlix.StreamerSync {
  requests = 0;
  readonly #renew: () => Promise<void>;

  constructor(renew: () => Promise<void>) {
    super();
    this.#renew = renew;
  }

  async requestAuthentication(): Promise<void> {
    this.requests++;
    await this.#renew();
  }
}

/** IceStorm, an Authenticator (user alice / secret) and a streaming service on media/, and a client communicator. */
class Platform {
  readonly children: Child[] = [];
  icestorm!: IceStormServer;
  communicator!: Ice.Communicator;
  adapter!: Ice.ObjectAdapter;
  events!: EventChannel;
  authenticator!: IceFlix.AuthenticatorPrx;
  http!: IceFlixWeb.HttpStreamingPrx;
  catalog!: IceFlix.MediaCatalogPrx;
  streamingLog!: () => string;
  dir!: string;

  /** The page's URL, when started with `web`. */
  pageUrl = "";
  routerProxy = "";
  mainProxy = "";
  glacier2!: Child;
  usersFile = "";
  authChild!: Child;

  /** With `web`: Main, a catalog, Glacier2 and the page's server too, on free ports. */
  static async start(
    tokenLifetime: number,
    gracePeriod: number,
    web = false,
    media = `${ROOT}media`,
  ): Promise<Platform> {
    const platform = new Platform();
    platform.dir = await scratchDir("test-web-");
    platform.icestorm = await IceStormServer.start();
    const option = platform.icestorm.option;
    ({ communicator: platform.communicator, adapter: platform.adapter } = await testCommunicator([option]));
    platform.events = new EventChannel(
      platform.communicator,
      createLogger("test", platform.communicator.getProperties()),
    );
    const interval = "--IceFlix.Discovery.AnnounceInterval=1";
    const auth = await startIceFlixService("auth", [
      "--AuthAdapter.Endpoints=tcp -h 127.0.0.1",
      option,
      interval,
      `--IceFlix.Auth.UsersFile=${platform.usersFile = await writeUsersFile(platform.dir, { alice: "secret" })}`,
      `--IceFlix.Auth.TokenLifetime=${tokenLifetime}`,
    ]);
    platform.children.push(platform.authChild = auth.child);
    const streaming = await startIceFlixService("streaming", [
      option,
      interval,
      `--IceFlix.Controller.GracePeriod=${gracePeriod}`,
      `--IceFlix.Streaming.MediaDir=${media}`,
      "--IceFlix.LogLevel=debug",
    ]);
    platform.children.push(streaming.child);
    platform.streamingLog = () => streaming.child.stderr;
    await eventually(
      "the streaming service knows the Authenticator",
      () => /auth service \S+ found/.test(platform.streamingLog()),
    );
    platform.authenticator = IceFlix.AuthenticatorPrx.uncheckedCast(platform.communicator.stringToProxy(auth.proxy));
    platform.http = IceFlixWeb.HttpStreamingPrx.uncheckedCast(
      platform.communicator.stringToProxy(streaming.proxy),
      HTTP_STREAMING_FACET,
    );
    if (web) await platform.#startWeb(option, interval);
    return platform;
  }

  async #startWeb(icestorm: string, interval: string): Promise<void> {
    const catalog = await startIceFlixService("catalog", [
      icestorm,
      interval,
      `--IceFlix.Catalog.DatabaseFile=${this.dir}/catalog.json`,
    ]);
    this.children.push(catalog.child);
    const main = await startIceFlixService("main", ["--MainAdapter.Endpoints=tcp -h 127.0.0.1", icestorm, interval]);
    this.children.push(main.child);
    const routerPort = await freePort();
    this.glacier2 = new Child("glacier2router", [
      `--Ice.Config=${ROOT}config/glacier2.config`,
      `--Glacier2.Client.Endpoints=ws -h 127.0.0.1 -p ${routerPort}`,
    ]);
    this.children.push(this.glacier2);
    await waitForPort(routerPort);
    this.routerProxy = `Glacier2/router:ws -h 127.0.0.1 -p ${routerPort}`;
    this.mainProxy = main.proxy;
    const page = await startIceFlixService("web", [
      `--IceFlix.Web.Port=${await freePort()}`,
      `--IceFlix.Web.RouterProxy=${this.routerProxy}`,
      `--IceFlix.Client.MainProxy=${main.proxy}`,
      icestorm,
      interval,
    ]);
    this.children.push(page.child);
    this.pageUrl = page.proxy;
    this.catalog = IceFlix.MediaCatalogPrx.uncheckedCast(this.communicator.stringToProxy(catalog.proxy));
    await eventually("the catalog knows both samples", async () => {
      return (await this.catalog.getTilesByName("", false)).length === 2;
    }, 30);
  }

  async logIn(): Promise<string> {
    return await this.authenticator.refreshAuthorization("alice", await sha256Hex("secret"));
  }

  async stop(): Promise<void> {
    for (const child of this.children.reverse()) await child.stop();
    await this.events.close();
    await this.communicator.destroy();
    await this.icestorm.stop();
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** A GET (or another method) of `url` with these headers: status, body text or bytes, headers. */
async function get(url: string, headers: Record<string, string> = {}, method = "GET") {
  const response = await fetch(url, { method, headers });
  const bytes = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, bytes, text: new TextDecoder().decode(bytes), headers: response.headers };
}

Deno.test("http: the whole file and ranges of it, with the types a browser asks canPlayType about", async () => {
  const platform = await Platform.start(30, 10);
  try {
    const token = await platform.logIn();
    const mp4 = await Deno.readFile(MP4);
    const stream = (await platform.http.getHttpStream(await sha256File(MP4), token))!;
    assert.equal(stream.mimeType, 'video/mp4; codecs="avc1.4d401e"');
    assert.match(stream.url, /^http:\/\/127\.0\.0\.1:\d+\/media\/[0-9a-f]{64}\?ticket=[0-9a-f]{32}$/);
    assert.ok(!stream.url.includes(token), "the URL does not carry the token");

    const whole = await get(stream.url);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get("content-type"), "video/mp4");
    assert.equal(whole.headers.get("accept-ranges"), "bytes");
    assert.deepEqual(whole.bytes, mp4);

    const middle = await get(stream.url, { Range: "bytes=100-199" });
    assert.equal(middle.status, 206);
    assert.equal(middle.headers.get("content-range"), `bytes 100-199/${mp4.length}`);
    assert.deepEqual(middle.bytes, mp4.subarray(100, 200));
    const rest = await get(stream.url, { Range: `bytes=${mp4.length - 5}-` });
    assert.deepEqual(rest.bytes, mp4.subarray(mp4.length - 5));
    const suffix = await get(stream.url, { Range: "bytes=-7" });
    assert.equal(suffix.headers.get("content-range"), `bytes ${mp4.length - 7}-${mp4.length - 1}/${mp4.length}`);
    assert.deepEqual(suffix.bytes, mp4.subarray(mp4.length - 7));
    const head = await get(stream.url, {}, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(mp4.length));

    const webm = (await platform.http.getHttpStream(await sha256File(WEBM), token))!;
    assert.equal(webm.mimeType, 'video/webm; codecs="vp8"');
    assert.deepEqual((await get(webm.url)).bytes, await Deno.readFile(WEBM));

    await stream.controller!.stop();
    const stopped = await get(stream.url);
    assert.equal(stopped.status, 403, "a stopped playback's URL is refused");
    assert.match(stopped.text, /stopped/);
    assert.equal((await get(webm.url, { Range: "bytes=0-0" })).status, 206, "the other playback goes on");
  } finally {
    await platform.stop();
  }
});

Deno.test("http: bad tokens, unknown ids and bad requests get a clear refusal, and the service goes on", async () => {
  const platform = await Platform.start(30, 10);
  try {
    const id = await sha256File(MP4);
    await assert.rejects(platform.http.getHttpStream(id, "forged"), IceFlix.Unauthorized);
    await assert.rejects(
      platform.http.getHttpStream("f".repeat(64), await platform.logIn()),
      (error: unknown) => error instanceof IceFlix.WrongMediaId && error.id === "f".repeat(64),
    );
    const { url } = (await platform.http.getHttpStream(id, await platform.logIn()))!;
    const other = (await platform.http.getHttpStream(await sha256File(WEBM), await platform.logIn()))!;
    const origin = new URL(url).origin;
    const ticket = new URL(url).searchParams.get("ticket");
    const refusals: [string, Record<string, string>, string, number, RegExp][] = [
      [`${origin}/media/${"f".repeat(64)}?ticket=${ticket}`, {}, "GET", 404, /no title with id f{64}/],
      [`${origin}/media/${id}`, {}, "GET", 401, /no ticket/],
      [`${origin}/media/${id}?ticket=${"0".repeat(32)}`, {}, "GET", 403, /not valid/],
      [`${origin}/media/${id}?ticket=${new URL(other.url).searchParams.get("ticket")}`, {}, "GET", 403, /not valid/],
      [`${origin}/elsewhere`, {}, "GET", 404, /stream URLs are \/media\/<id>\?ticket=/],
      [url, { Range: "bytes=abc" }, "GET", 400, /malformed Range header "bytes=abc"/],
      [url, { Range: "bytes=20-10" }, "GET", 400, /the end is before the start/],
      [url, { Range: "bytes=0-1,5-6" }, "GET", 416, /only one byte range/],
      [url, { Range: "bytes=999999999-" }, "GET", 416, /past the end/],
      [url, {}, "POST", 405, /GET or HEAD/],
    ];
    for (const [target, headers, method, status, message] of refusals) {
      const response = await get(target, headers, method);
      assert.equal(response.status, status, `${method} ${target} ${JSON.stringify(headers)}: ${response.text}`);
      assert.match(response.text, message);
    }
    const size = (await Deno.stat(MP4)).size;
    assert.equal((await get(url, { Range: "bytes=999999999-" })).headers.get("content-range"), `bytes */${size}`);
    // A client that goes away in the middle of a transfer.
    const abort = new AbortController();
    const response = await fetch(url, { signal: abort.signal });
    await response.body!.getReader().read();
    abort.abort();
    assert.equal((await get(url, { Range: "bytes=0-9" })).status, 206, "still serving");
    assert.doesNotMatch(platform.streamingLog(), /ERROR/);
  } finally {
    await platform.stop();
  }
});

Deno.test("http: after a revocation a new token within the grace period keeps the URL served; none ends it", async () => {
  // Tokens live 3 s: both playbacks' tokens are revoked; one is renewed whenever its controller asks.
  const platform = await Platform.start(3, 3);
  try {
    const id = await sha256File(WEBM);
    const token = await platform.logIn();
    const renewed = (await platform.http.getHttpStream(id, token))!;
    const abandoned = (await platform.http.getHttpStream(id, token))!;
    const renewer = new Renewer(async () => await renewed.controller!.refreshAuthentication(await platform.logIn()));
    await platform.events.subscribe(
      await renewed.controller!.getSyncTopic(),
      platform.adapter.addWithUUID(renewer),
    );

    await eventually("the token is revoked and renewed", () => renewer.requests >= 1, 10);
    assert.equal((await get(abandoned.url, { Range: "bytes=0-9" })).status, 206, "served during the grace period");
    // Ten bytes, not the whole file: a transfer in progress when the grace period ends is cut, by design.
    await eventually("the abandoned URL is refused", async () => {
      return (await get(abandoned.url, { Range: "bytes=0-9" })).status === 403;
    }, 15);
    assert.equal((await get(renewed.url, { Range: "bytes=0-9" })).status, 206, "the renewed URL is still served");
    assert.match(platform.streamingLog(), /closed \(no new token within 3 s of the revocation\)/);
  } finally {
    await platform.stop();
  }
});

/**
 * Runs `test` on a platform started with `options` (see {@linkcode Platform.start}) and the page opened on it; then
 * closes the page and stops the platform.
 */
async function withPage(
  options: Parameters<typeof Platform.start>,
  test: (platform: Platform, page: Page) => Promise<void>,
): Promise<void> {
  const platform = await Platform.start(...options);
  try {
    const { page, close } = await openPage(platform.pageUrl);
    try {
      await test(platform, page);
    } finally {
      await close();
    }
  } finally {
    await platform.stop();
  }
}

async function logInAndSelect(page: Page, name: string): Promise<void> {
  await logIn(page, "alice", "secret");
  await select(page, name);
}

Deno.test("page: connect, a wrong password refused, log in, search, select, tag, play past 2 s, stop, rename", async () => {
  await withPage([30, 10, true], async (platform, page) => {
    // Everything the page sends travels on its WebSocket to Glacier2: the password must not, its SHA-256 must.
    const sent: string[] = [];
    page.on("websocket", (socket) => socket.on("framesent", ({ payload }) => sent.push(payload.toString())));
    await page.reload();
    await page.locator("#state").filter({ hasText: /^connected/ }).waitFor();
    assert.equal(await state(page), "connected · not logged in · nothing selected · not playing");

    await page.fill("#user", "alice");
    await page.fill("#password", "wrong");
    await page.click("#login-button");
    await page.locator("#message", { hasText: "wrong user name or password" }).waitFor();
    assert.match((await state(page))!, /not logged in/);
    await page.click("#add-tags");
    await page.locator("#message", { hasText: "log in first to add tags" }).waitFor();

    await logIn(page, "alice", "secret");
    await page.click("#rename-button");
    await page.locator("#message", { hasText: "select a title first to rename it" }).waitFor();
    await select(page, "bouncing_ball");
    const hash = await sha256Hex("secret");
    assert.ok(sent.some((frame) => frame.includes(hash)), "the hash is sent");
    assert.ok(!sent.some((frame) => frame.includes("secret")), "the password is not");
    await page.fill("#tag-list", "browser test, vp8");
    await page.click("#add-tags");
    await page.locator("#results li.selected", { hasText: "browser test, vp8" }).waitFor();
    const id = await sha256File(WEBM);
    assert.deepEqual((await platform.catalog.getTile(id)).info.tags, ["browser test", "vp8"]);
    // A search by tags finds it, with its name and tags.
    await page.fill("#query", "VP8, nothing like it");
    await page.selectOption("#mode", "any");
    await page.click("#search-button");
    await page.locator("#message", { hasText: "1 title(s) found" }).waitFor();
    assert.deepEqual(await page.locator("#results li").allTextContents(), ["bouncing_ball browser test, vp8"]);

    await page.click("#play");
    await eventually("the video plays past 2 s", async () => await currentTime(page) > 2, 20);
    // The state line is redrawn every second.
    await page.locator("#state").filter({ hasText: /playing 0:0[2-9]$/ }).waitFor();
    assert.match((await state(page))!, /^connected · user alice · selected «bouncing_ball» · playing 0:0[2-9]$/);
    await Deno.mkdir(`${ROOT}data`, { recursive: true });
    await page.screenshot({ path: `${ROOT}data/web-client.png` });
    const url = await videoProperty<string>(page, "currentSrc");
    await page.click("#stop");
    await page.locator("#state").filter({ hasText: "not playing" }).waitFor();
    assert.equal(await videoProperty<boolean>(page, "paused"), true);
    assert.equal((await get(url)).status, 403, "the stopped playback's URL is refused");

    await page.fill("#new-name", "Bouncing Ball");
    await page.click("#rename-button");
    await page.locator("#results li.selected", { hasText: "Bouncing Ball" }).waitFor();
    assert.match((await state(page))!, /selected «Bouncing Ball»/);
    assert.equal((await platform.catalog.getTile(id)).info.name, "Bouncing Ball");
  });
});

Deno.test("page: a token that expires and cannot be renewed stops playback when the grace period ends", async () => {
  // Tokens live 2 s: the page renews its token once while the video plays (the revocation and the stream's request
  // reach it through Glacier2); then the password changes, so the page cannot renew it any more.
  await withPage([2, 2, true], async (platform, page) => {
    await logInAndSelect(page, "test_pattern");
    await page.click("#play");
    await eventually("the video plays", async () => await currentTime(page) > 0.5, 20);
    const url = await videoProperty<string>(page, "currentSrc");
    await eventually("the page renews the stream's token", () => /authorised again/.test(platform.streamingLog()));
    assert.equal(await videoProperty<boolean>(page, "paused"), false, "the video goes on");
    await writeUsersFile(platform.dir, { alice: "changed" });
    Deno.kill(platform.authChild.process.pid, "SIGUSR2");

    await page.locator("#message", { hasText: "the server ended the stream" }).waitFor({ timeout: 20_000 });
    assert.match((await state(page))!, /not logged in · selected «test_pattern» · not playing$/);
    assert.equal(await videoProperty<boolean>(page, "paused"), true);
    assert.ok(await currentTime(page) < 9, "stopped before the end of the 10 s video");
    assert.equal((await get(url)).status, 403);
    assert.match(platform.streamingLog(), /closed \(no new token within 2 s of the revocation\)/);
  });
});

Deno.test("page: after IceStorm restarts with no memory of anyone, the page subscribes again and its stream goes on", async () => {
  // Tokens live 4 s: every 4 s the stream asks the page for a new one on its sync topic, and ends 4 s after a request
  // that gets no answer. IceStorm restarts just after one renewal, forgetting every topic and subscriber: the next
  // request reaches the page only if it has subscribed again (the services do within their 1 s announce interval).
  // With 2 s tokens, IceStorm's restart plus a second of resubscription sometimes took the whole lifetime, and the
  // request was lost before anyone could have subscribed again (a red CI run).
  await withPage([4, 4, true], async (platform, page) => {
    await logInAndSelect(page, "test_pattern");
    await page.click("#play");
    await eventually("the video plays", async () => await currentTime(page) > 0.3, 20);
    const renewals = () => platform.streamingLog().match(/authorised again/g)?.length ?? 0;
    await eventually("the page renews the stream's token", () => renewals() >= 1);
    await platform.icestorm.restart({ forget: true });
    const before = renewals();
    await eventually("the page renews the stream's token after the restart", () => renewals() > before, 15);
    assert.doesNotMatch(platform.streamingLog(), /closed \(no new token/);
    assert.equal(await videoProperty<boolean>(page, "paused"), false, "the video goes on");
  });
});

Deno.test("glacier2: a browser's session reaches the platform's loopback services; asking for more ends it", async () => {
  await withPage([30, 10, true], async (platform, page) => {
    // A session of its own per probe, made in the page with the ice package's browser build (globals Ice, Glacier2).
    const probe = (proxy: string) =>
      page.evaluate<string>(`(async () => {
        const initData = new Ice.InitializationData();
        initData.properties = Ice.createProperties();
        initData.properties.setProperty("Ice.Default.Router", ${JSON.stringify(platform.routerProxy)});
        const communicator = Ice.initialize(initData);
        try {
          await Glacier2.RouterPrx.uncheckedCast(communicator.getDefaultRouter()).createSession("anyone", "");
          await communicator.stringToProxy(${JSON.stringify(proxy)}).ice_invocationTimeout(5000).ice_ping();
          return "reached";
        } catch (error) {
          return error.ice_id ? error.ice_id() : String(error);
        } finally {
          await communicator.destroy();
        }
      })()`);
    assert.equal(await probe(platform.mainProxy), "reached");
    // Glacier2 refuses the proxy and closes the connection, so the session ends.
    assert.equal(await probe("Elsewhere:tcp -h 192.0.2.1 -p 10010"), "::Ice::ConnectionLostException");
    assert.equal(await probe("Mixed:tcp -h 127.0.0.1 -p 22:tcp -h 192.0.2.1 -p 22"), "::Ice::ConnectionLostException");
    await eventually("Glacier2 says which proxies it rejected", () => {
      const log = platform.glacier2.stderr;
      return log.includes("rejected proxy Elsewhere") && log.includes("rejected proxy Mixed");
    });
    assert.match((await state(page))!, /^connected/, "the page's own session goes on");
  });
});

Deno.test("page: a title the browser cannot play is said so, and its stream is stopped", async () => {
  // H.264 in AVI: GStreamer streams it over RTP, but no browser plays that container.
  const media = await Deno.makeTempDir({ prefix: "iceflix-media-" });
  await Deno.copyFile(WEBM, `${media}/bouncing_ball.webm`);
  const made = await new Deno.Command("gst-launch-1.0", {
    args: [
      ...["-q", "videotestsrc", "num-buffers=30", "!", "video/x-raw,width=320,height=240,framerate=30/1"],
      ...["!", "x264enc", "!", "avimux", "!", "filesink", `location=${media}/clip.avi`],
    ],
  }).output();
  assert.ok(made.success, new TextDecoder().decode(made.stderr));
  try {
    await withPage([30, 10, true, media], async (platform, page) => {
      await logInAndSelect(page, "clip");
      await page.click("#play");
      await page.locator("#message", { hasText: "this browser cannot play «clip»" }).waitFor();
      assert.match((await state(page))!, /selected «clip» · not playing$/);
      await eventually("its stream is stopped", () => /closed \(stopped by the client\)/.test(platform.streamingLog()));
    });
  } finally {
    await Deno.remove(media, { recursive: true });
  }
});

Deno.test("run_iceflix starts Glacier2 and the page with the platform, and stops them with it", async () => {
  const dir = await scratchDir("test-web-");
  const [icestormPort, mainPort, webPort, routerPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const platform = new Child(`${ROOT}run_iceflix`, [
    ...["--data", dir, "--icestorm-port", String(icestormPort), "--main-endpoints", `tcp -h 127.0.0.1 -p ${mainPort}`],
    ...["--web-port", String(webPort), "--router-port", String(routerPort)],
    `--IceFlix.Auth.UsersFile=${await writeUsersFile(dir, { alice: "secret" })}`,
    `--IceFlix.Catalog.DatabaseFile=${dir}/catalog.json`,
    "--IceFlix.Discovery.AnnounceInterval=1",
  ]);
  let page: Awaited<ReturnType<typeof openPage>> | undefined;
  try {
    await platform.line(1, 120);
    assert.match(platform.stderr, new RegExp(`the web client: open http://127\\.0\\.0\\.1:${webPort}/`));
    page = await openPage(`http://127.0.0.1:${webPort}/`);
    await logIn(page.page, "alice", "secret");
    await eventually("a search through the platform's Glacier2 finds the sample", async () => {
      await page!.page.fill("#query", "bouncing");
      await page!.page.click("#search-button");
      return await page!.page.locator("#results li", { hasText: "bouncing_ball" }).count() === 1;
    }, 30);
    await page.close();
    page = undefined;
    assert.equal((await platform.stop("SIGTERM")).code, 0, platform.stderr);
    assert.ok(!(await listens(routerPort)) && !(await listens(webPort)), "Glacier2 and the page's server are gone");
  } finally {
    await page?.close();
    await platform.stop("SIGTERM");
    await Deno.remove(dir, { recursive: true });
  }
});

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
async function listens(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}
