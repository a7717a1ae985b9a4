/**
 * StreamProvider and StreamController, the real thing: `./run_service streaming`,
 * IceStorm, the toy Authenticator, gst-launch-1.0 senders, and gst-launch-1.0
 * receivers that decode what arrives (udpsrc, or sdpdemux reading the SDP the
 * controller returned).
 */
import assert from "node:assert/strict";
import { Ice, IceStorm } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { basename } from "node:path";
// @ts-types="../slice/streams.d.ts"
import { IceFlixStreams } from "../slice/streams.js";
import { EventChannel, TOPICS } from "../events.ts";
import { createLogger, describeError } from "../service.ts";
import { sha256Hex } from "../users.ts";
import {
  Child,
  delay,
  eventually,
  freePort,
  IceStormServer,
  processExists,
  ROOT,
  RtpReceiver,
  runPython,
  scratchDir,
  startIceFlixService,
  startService,
  testCommunicator,
  writeUsersFile,
} from "../harness.ts";

/** The samples ./setup makes in media/: one streamed as it is, one re-encoded. */
const COPY_SAMPLE = "test_pattern.mp4";
const REENCODE_SAMPLE = "bouncing_ball.webm";

/** The only token the toy Authenticator accepts. */
const TOKEN = "toy-token";

/** Decoded frames that show a stream plays (the samples run at 30 frames a second). */
const SOME_FRAMES = 15;

/** The lowercase hex SHA-256 of a file, as `sha256sum` computes it. */
async function sha256sum(path: string): Promise<string> {
  const output = await new Deno.Command("sha256sum", { args: [path] }).output();
  assert.ok(output.success);
  return new TextDecoder().decode(output.stdout).split(" ")[0];
}

/** A temporary media folder holding copies of `files` from media/. */
async function mediaFolder(files: string[]): Promise<string> {
  const folder = await Deno.makeTempDir({ prefix: "iceflix-media-" });
  for (const file of files) await Deno.copyFile(`${ROOT}media/${file}`, `${folder}/${file}`);
  return folder;
}

/**
 * Waits until files written now are a second old: a scan trusts what it found of a file only once the file's status
 * change time (whole seconds) is before the second of the scan (streaming.ts, FileState).
 */
function settle(): Promise<void> {
  return delay(1000);
}

/** Writes a short H.264 MP4 of `frames` frames of snow (different bytes from the samples). */
async function makeClip(path: string, frames: number): Promise<void> {
  const output = await new Deno.Command("gst-launch-1.0", {
    args: [
      ...["-q", "videotestsrc", `num-buffers=${frames}`, "pattern=snow", "!"],
      ...["video/x-raw,width=320,height=240,framerate=30/1", "!", "x264enc", "key-int-max=15", "!", "mp4mux"],
      ...["!", "filesink", `location=${path}`],
    ],
  }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
}

/**
 * Whether `controller` is gone (its servant removed). Asked with `ice_ping`, which Ice answers itself: it is no
 * call to the controller, so it does not keep an idle controller open.
 */
async function isGone(controller: Ice.ObjectPrx): Promise<boolean> {
  try {
    await controller.ice_ping();
    return false;
  } catch (error) {
    if (error instanceof Ice.ObjectNotExistException) return true;
    throw error;
  }
}

/** Collects `newMedia` events. */
class Announcements extends IceFlix.StreamAnnounces {
  readonly received: { id: string; name: string; provider: string }[] = [];

  newMedia(id: string, initialName: string, providerId: string): void {
    this.received.push({ id, name: initialName, provider: providerId });
  }
}

/** Counts `requestAuthentication` events. */
class SyncListener extends IceFlix.StreamerSync {
  requests = 0;

  requestAuthentication(): void {
    this.requests++;
  }
}

/**
 * One test's system: IceStorm, a streaming service on a media folder, the toy
 * Authenticator when asked for, and an Ice communicator of the test's own (a
 * client, IceStorm publisher and subscriber).
 */
class Stack {
  readonly icestorm: IceStormServer;
  readonly communicator: Ice.Communicator;
  readonly adapter: Ice.ObjectAdapter;
  readonly events: EventChannel;
  streaming!: Child;
  provider!: IceFlix.StreamProviderPrx;
  providerText = "";
  #toy: Child | undefined;
  #auth: { child: Child; dir: string } | undefined;
  readonly #receivers: RtpReceiver[] = [];

  private constructor(icestorm: IceStormServer, communicator: Ice.Communicator, adapter: Ice.ObjectAdapter) {
    this.icestorm = icestorm;
    this.communicator = communicator;
    this.adapter = adapter;
    this.events = new EventChannel(communicator, createLogger("test", communicator.getProperties()));
  }

  /** IceStorm and the test's communicator; then {@linkcode startStreaming} and {@linkcode startAuth}. */
  static async start(): Promise<Stack> {
    const icestorm = await IceStormServer.start();
    const { communicator, adapter } = await testCommunicator([icestorm.option]);
    return new Stack(icestorm, communicator, adapter);
  }

  async startStreaming(media: string, properties: string[] = []): Promise<void> {
    const { child, proxy } = await startIceFlixService("streaming", [
      this.icestorm.option,
      `--IceFlix.Streaming.MediaDir=${media}`,
      "--IceFlix.Discovery.AnnounceInterval=1",
      ...properties,
    ]);
    this.streaming = child;
    this.providerText = proxy;
    this.provider = IceFlix.StreamProviderPrx.uncheckedCast(this.communicator.stringToProxy(proxy));
  }

  /** Starts the toy Authenticator and waits until the streaming service knows it. */
  async startAuth(): Promise<void> {
    const toy = await startService("tests/toy_service.ts", [
      "--ToyAdapter.Endpoints=tcp -h 127.0.0.1",
      this.icestorm.option,
      "--IceFlix.Discovery.AnnounceInterval=1",
    ]);
    this.#toy = toy.child;
    await eventually("the streaming service knows the Authenticator", () => /auth service \S+ found/.test(this.log));
  }

  /**
   * Starts a real Authenticator with `passwords` (user -> password) and waits until the streaming service knows it.
   * Returns how to log in: a new token of that user at each call.
   */
  async startAuthenticator(
    passwords: Record<string, string>,
    properties: string[] = [],
  ): Promise<(user: string) => Promise<string>> {
    const dir = await scratchDir("test-streaming-");
    const started = await startIceFlixService("auth", [
      "--AuthAdapter.Endpoints=tcp -h 127.0.0.1",
      this.icestorm.option,
      "--IceFlix.Discovery.AnnounceInterval=1",
      `--IceFlix.Auth.UsersFile=${await writeUsersFile(dir, passwords)}`,
      ...properties,
    ]);
    this.#auth = { child: started.child, dir };
    await eventually("the streaming service knows the Authenticator", () => /auth service \S+ found/.test(this.log));
    const authenticator = IceFlix.AuthenticatorPrx.uncheckedCast(this.communicator.stringToProxy(started.proxy));
    return async (user) => authenticator.refreshAuthorization(user, await sha256Hex(passwords[user]));
  }

  /** What the streaming service logged so far. */
  get log(): string {
    return this.streaming.stderr;
  }

  /** The pids of the gst-launch-1.0 senders started so far, in order. */
  get senderPids(): number[] {
    return [...this.log.matchAll(/gst-launch-1\.0 pid (\d+)/g)].map((match) => Number(match[1]));
  }

  /** Waits for the sender started by a getSDP that returned (its log line may still be on its way). */
  async newSender(known: number): Promise<number> {
    await eventually("the sender's pid is logged", () => this.senderPids.length > known);
    return this.senderPids[known];
  }

  async receiver(port: number): Promise<RtpReceiver> {
    const receiver = await RtpReceiver.onPort(port);
    this.#receivers.push(receiver);
    return receiver;
  }

  async sdpReceiver(sdp: string): Promise<RtpReceiver> {
    const receiver = await RtpReceiver.fromSdp(sdp);
    this.#receivers.push(receiver);
    return receiver;
  }

  async topicExists(name: string): Promise<boolean> {
    const manager = IceStorm.TopicManagerPrx.uncheckedCast(this.communicator.stringToProxy(this.icestorm.proxy));
    try {
      await manager.retrieve(name);
      return true;
    } catch (error) {
      if (error instanceof IceStorm.NoSuchTopic) return false;
      throw error;
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.#receivers.map((receiver) => receiver.stop()));
    await this.streaming?.stop();
    await this.#toy?.stop();
    await this.#auth?.child.stop();
    if (this.#auth) await Deno.remove(this.#auth.dir, { recursive: true });
    await this.events.close();
    await this.communicator.destroy();
    await this.icestorm.stop();
  }
}

Deno.test("provider: ids are the files' sha256sum, every video announced, others skipped; reload_media adds and removes", async () => {
  const media = await mediaFolder([COPY_SAMPLE, REENCODE_SAMPLE]);
  await Deno.writeTextFile(`${media}/notes.txt`, "not a video");
  await Deno.writeTextFile(`${media}/broken.mp4`, "not a video either");
  await settle();
  const stack = await Stack.start();
  try {
    const announcements = new Announcements();
    await stack.events.subscribe(TOPICS.mediaAnnouncements, stack.adapter.addWithUUID(announcements));
    await stack.startStreaming(media);

    const copyId = await sha256sum(`${media}/${COPY_SAMPLE}`);
    const reencodeId = await sha256sum(`${media}/${REENCODE_SAMPLE}`);
    await eventually("both videos are announced", () => announcements.received.length === 2);
    assert.deepEqual(
      announcements.received.map(({ id, name }) => ({ id, name })).sort((a, b) => a.name < b.name ? -1 : 1),
      [{ id: reencodeId, name: "bouncing_ball" }, { id: copyId, name: "test_pattern" }],
    );
    const providerId = announcements.received[0].provider;
    assert.ok(announcements.received.every(({ provider }) => provider === providerId));
    await eventually("the log names the files skipped", () => /not videos, skipped: notes\.txt/.test(stack.log));
    await eventually("the log says why broken.mp4 is skipped", () => /skipping broken\.mp4: /.test(stack.log));
    assert.equal(await stack.provider.isAvailable(copyId), true);
    assert.equal(await stack.provider.isAvailable(reencodeId), true);
    assert.equal(await stack.provider.isAvailable("0".repeat(64)), false);

    await stack.provider.reannounceMedia();
    await eventually("both are announced again", () => announcements.received.length === 4);
    assert.deepEqual(new Set(announcements.received.slice(2).map(({ id }) => id)), new Set([copyId, reencodeId]));

    // While the service runs: one video arrives (written aside, then renamed, as a careful copy does), one goes.
    await makeClip(`${media}/new_clip.mp4.partial`, 10);
    await Deno.rename(`${media}/new_clip.mp4.partial`, `${media}/new_clip.mp4`);
    await Deno.remove(`${media}/${REENCODE_SAMPLE}`);
    const newId = await sha256sum(`${media}/new_clip.mp4`);
    const pidFile = await Deno.makeTempFile();
    await Deno.writeTextFile(pidFile, `${stack.streaming.process.pid}\n`);
    const reload = await new Deno.Command(`${ROOT}reload_media`, { args: [`--pid-file=${pidFile}`] }).output();
    assert.ok(reload.success, new TextDecoder().decode(reload.stderr));

    await eventually("the new video is announced", () => announcements.received.length === 5);
    assert.deepEqual(announcements.received[4], { id: newId, name: "new_clip", provider: providerId });
    await eventually("the rescan is over", () => stack.log.includes("1 new video(s) announced"));
    assert.equal(await stack.provider.isAvailable(newId), true);
    assert.equal(await stack.provider.isAvailable(reencodeId), false, "a removed file is no longer offered");
    assert.equal(await stack.provider.isAvailable(copyId), true);
    assert.equal(stack.log.split(`${COPY_SAMPLE}: video/x-h264`).length - 1, 1, "an unchanged file is not rehashed");
    assert.doesNotMatch(stack.log, /Debugger listening/, "the reload signal does not open Deno's inspector");
    await Deno.remove(pidFile);
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
  }
});

Deno.test("provider: a restart takes unchanged files from the scan cache, examines changed ones, ignores a bad cache", async () => {
  const media = await mediaFolder([COPY_SAMPLE]);
  await Deno.writeTextFile(`${media}/broken.mp4`, "not a video");
  await settle();
  const folder = await scratchDir("scan-cache-test-");
  const cache = `${folder}/cache.json`;
  const copyId = await sha256sum(`${media}/${COPY_SAMPLE}`);
  const stack = await Stack.start();
  const restart = async () => {
    await stack.streaming?.stop();
    await stack.startStreaming(media, [`--IceFlix.Streaming.ScanCache=${cache}`]);
  };
  try {
    await restart();
    assert.equal(await stack.provider.isAvailable(copyId), true);
    const stored = JSON.parse(await Deno.readTextFile(cache));
    assert.equal(stored.files[COPY_SAMPLE].id, copyId);
    assert.match(stored.files["broken.mp4"].refused, /./, "a refusal is cached too");

    // A cached id that is not the file's hash shows that an unchanged file is not read again.
    const cachedOnly = "a".repeat(64);
    stored.files[COPY_SAMPLE].id = cachedOnly;
    await Deno.writeTextFile(cache, JSON.stringify(stored));
    await restart();
    assert.equal(await stack.provider.isAvailable(cachedOnly), true, "the unchanged file's id comes from the cache");
    assert.equal(await stack.provider.isAvailable(copyId), false);
    await eventually("broken.mp4 is still refused, with its reason", () => /skipping broken\.mp4: /.test(stack.log));

    // A file touched since is examined again.
    await Deno.utime(`${media}/${COPY_SAMPLE}`, new Date(), new Date(Date.now() - 60_000));
    await restart();
    assert.equal(await stack.provider.isAvailable(copyId), true, "a changed file is hashed again");
    assert.equal(await stack.provider.isAvailable(cachedOnly), false);

    // A cache that does not parse is only a cache: ignored, every file examined, and replaced.
    await Deno.writeTextFile(cache, "{ not json");
    await restart();
    assert.equal(await stack.provider.isAvailable(copyId), true);
    assert.equal(JSON.parse(await Deno.readTextFile(cache)).files[COPY_SAMPLE].id, copyId);
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("provider: a file rewritten with the same size and modification time is hashed again, across a restart too", async () => {
  const media = await mediaFolder([COPY_SAMPLE]);
  const path = `${media}/${COPY_SAMPLE}`;
  const folder = await scratchDir("scan-cache-test-");
  const stack = await Stack.start();
  const start = () => stack.startStreaming(media, [`--IceFlix.Streaming.ScanCache=${folder}/cache.json`]);
  try {
    await start();
    const before = await sha256sum(path);
    assert.equal(await stack.provider.isAvailable(before), true);
    await stack.streaming.stop();

    // One byte in the middle of the file changes (the video data), in place; the times are set back.
    const { size, atime, mtime } = await Deno.stat(path);
    using file = await Deno.open(path, { read: true, write: true });
    const byte = new Uint8Array(1);
    await file.seek(Math.floor(size / 2), Deno.SeekMode.Start);
    await file.read(byte);
    await file.seek(Math.floor(size / 2), Deno.SeekMode.Start);
    await file.write(Uint8Array.of(byte[0] ^ 0xff));
    await Deno.utime(path, atime!, mtime!);
    const after = await Deno.stat(path);
    assert.deepEqual([after.size, after.mtime?.getTime()], [size, mtime?.getTime()], "same size and mtime");

    const rewritten = await sha256sum(path);
    await start();
    assert.equal(await stack.provider.isAvailable(before), false, "the old id is no longer offered");
    assert.equal(await stack.provider.isAvailable(rewritten), true, "the new content is hashed");
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("provider: a symbolic link out of the media folder is skipped with a log line; one inside is a video", async () => {
  const media = await mediaFolder([COPY_SAMPLE]);
  const outside = await Deno.makeTempDir({ prefix: "iceflix-outside-" });
  await makeClip(`${outside}/secret.mp4`, 10);
  await Deno.mkdir(`${media}/inner`);
  await makeClip(`${media}/inner/clip.mp4`, 12);
  await Deno.symlink(`${outside}/secret.mp4`, `${media}/absolute.mp4`);
  await Deno.symlink(`../${basename(outside)}/secret.mp4`, `${media}/relative.mp4`);
  await Deno.symlink("inner/clip.mp4", `${media}/inside.mp4`);
  const stack = await Stack.start();
  try {
    await stack.startStreaming(media);
    const [secret, inner] = await Promise.all([
      sha256sum(`${outside}/secret.mp4`),
      sha256sum(`${media}/inner/clip.mp4`),
    ]);
    assert.equal(await stack.provider.isAvailable(inner), true, "a link inside the folder is followed");
    assert.equal(await stack.provider.isAvailable(secret), false, "a link out of it is not");
    for (const link of ["absolute.mp4", "relative.mp4"]) {
      assert.match(
        stack.log,
        new RegExp(`skipping ${link}: a symbolic link to \\S*secret\\.mp4, outside the media folder`),
      );
    }
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("getStream and getSDP refuse bad tokens, unknown ids, bad ports, and streams past the limit", async () => {
  const media = await mediaFolder([COPY_SAMPLE]);
  const stack = await Stack.start();
  try {
    await stack.startStreaming(media, ["--IceFlix.Streaming.MaxStreams=2"]);
    const id = await sha256sum(`${media}/${COPY_SAMPLE}`);
    await assert.rejects(stack.provider.getStream(id, TOKEN), IceFlix.Unauthorized, "no Authenticator: refused");

    await stack.startAuth();
    await assert.rejects(stack.provider.getStream(id, "forged"), IceFlix.Unauthorized);
    await assert.rejects(
      stack.provider.getStream("f".repeat(64), TOKEN),
      (error: unknown) => error instanceof IceFlix.WrongMediaId && error.id === "f".repeat(64),
    );

    const first = (await stack.provider.getStream(id, TOKEN))!;
    const second = (await stack.provider.getStream(id, TOKEN))!;
    await assert.rejects(
      stack.provider.getStream(id, TOKEN),
      // Any Ice client shows the reason: describeError prints it as IceFlix's own clients do.
      (error: unknown) => /^::Ice::UnknownException: .*maximum of 2 streams/.test(describeError(error)),
    );
    await assert.rejects(first.getSDP("forged", await freePort()), IceFlix.Unauthorized);
    for (const port of [80, 0, -1, 65536]) {
      await assert.rejects(
        first.getSDP(TOKEN, port),
        (error: unknown) => error instanceof Ice.UnknownException && /port .* refused/.test(error.unknown),
      );
    }
    await assert.rejects(first.refreshAuthentication("forged"), IceFlix.Unauthorized);

    await first.stop();
    await assert.rejects(first.getSyncTopic(), Ice.ObjectNotExistException);
    const third = (await stack.provider.getStream(id, TOKEN))!;
    assert.notEqual(await third.getSyncTopic(), await second.getSyncTopic(), "each stream has its own topic");
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
  }
});

Deno.test("per user: one user cannot open a 5th stream, with any of their tokens, while another user still can", async () => {
  const media = await mediaFolder([COPY_SAMPLE]);
  const stack = await Stack.start();
  try {
    await stack.startStreaming(media, ["--IceFlix.Streaming.MaxStreams=8"]); // the per-user default: 4
    const logIn = await stack.startAuthenticator({ alice: "alice's secret", bob: "bob's secret" });
    const id = await sha256sum(`${media}/${COPY_SAMPLE}`);
    const alice = await logIn("alice");
    const held = [];
    for (let i = 0; i < 4; i++) held.push((await stack.provider.getStream(id, alice))!);
    // Whatever token alice shows: a new login is the same user.
    for (const token of [alice, await logIn("alice")]) {
      await assert.rejects(
        stack.provider.getStream(id, token),
        (error: unknown) =>
          error instanceof IceFlixStreams.StreamLimitReached && error instanceof IceFlix.Unauthorized &&
          /^user "alice" already has 4 streams open .*MaxStreamsPerUser/.test(error.reason),
      );
    }
    // A client that knows only the spec's Slice gets the spec's Unauthorized.
    assert.equal(
      (await runPython("stream_limit_from_python.py", [stack.providerText, id, alice])).trim(),
      "unauthorized",
    );

    // Bob still can, and his stream plays.
    const bob = await logIn("bob");
    const bobs = (await stack.provider.getStream(id, bob))!;
    const port = await freePort();
    const receiver = await stack.receiver(port);
    await bobs.getSDP(bob, port);
    await eventually("bob's receiver decodes frames", () => receiver.frames >= SOME_FRAMES);

    // A stream alice stops is hers no more.
    await held.pop()!.stop();
    held.push((await stack.provider.getStream(id, alice))!);
    await Promise.all([...held, bobs].map((controller) => controller.stop()));
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
  }
});

Deno.test("idle: a controller that sends nothing and gets no call closes, its topic too; one whose video ended too", async () => {
  const IDLE = 1.5;
  const media = await mediaFolder([COPY_SAMPLE]);
  await makeClip(`${media}/short_clip.mp4`, 10);
  const stack = await Stack.start();
  try {
    await stack.startStreaming(media, [`--IceFlix.Controller.IdleTimeout=${IDLE}`]);
    await stack.startAuth();

    // Never asked for video.
    const unused = (await stack.provider.getStream(await sha256sum(`${media}/${COPY_SAMPLE}`), TOKEN))!;
    const unusedTopic = await unused.getSyncTopic();
    assert.equal(await stack.topicExists(unusedTopic), true);
    // Still sending after the idle timeout: a stream that plays is not idle.
    const playing = (await stack.provider.getStream(await sha256sum(`${media}/${COPY_SAMPLE}`), TOKEN))!;
    const port = await freePort();
    const receiver = await stack.receiver(port);
    await playing.getSDP(TOKEN, port);
    // The video ends at once.
    const ended = (await stack.provider.getStream(await sha256sum(`${media}/short_clip.mp4`), TOKEN))!;
    const endedTopic = await ended.getSyncTopic();
    await ended.getSDP(TOKEN, await freePort());

    await eventually("the unused controller is gone", () => isGone(unused));
    await eventually("its topic is destroyed", async () => !(await stack.topicExists(unusedTopic)));
    await eventually("the end of the short video is logged", () => /short_clip.*reached the end/.test(stack.log));
    await eventually("the controller whose video ended is gone", () => isGone(ended));
    await eventually("its topic is destroyed", async () => !(await stack.topicExists(endedTopic)));
    assert.match(stack.log, new RegExp(`closed \\(idle: no video sent and no call for ${IDLE} s\\)`));

    assert.equal(await isGone(playing), false, "the playing stream is still there");
    const before = receiver.frames;
    await eventually("its frames keep arriving", () => receiver.frames > before);
    await playing.stop();
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
  }
});

Deno.test("getSDP: both samples are decoded (copy and re-encode), the SDP plays, a new port moves the stream, stop() ends it", async () => {
  const media = await mediaFolder([COPY_SAMPLE, REENCODE_SAMPLE]);
  const stack = await Stack.start();
  try {
    await stack.startStreaming(media);
    await stack.startAuth();

    // H.264 in MP4, sent as it is, to a receiver that knows the caps.
    const copy = (await stack.provider.getStream(await sha256sum(`${media}/${COPY_SAMPLE}`), TOKEN))!;
    const firstPort = await freePort();
    const first = await stack.receiver(firstPort);
    const sdp = await copy.getSDP(TOKEN, firstPort);
    assert.match(sdp, /^v=0\r\no=- \d+ 1 IN IP4 127\.0\.0\.1\r\ns=test_pattern\r\nc=IN IP4 127\.0\.0\.1\r\nt=0 0\r\n/);
    assert.match(sdp, new RegExp(`\r\nm=video ${firstPort} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n`));
    assert.match(sdp, /\r\na=fmtp:96 packetization-mode=1\r\n$/);
    const copyPid = await stack.newSender(0);
    await eventually("the log says copy", () => /sending \(copy, gst-launch-1\.0 pid \d+\)/.test(stack.log));
    await eventually("the receiver decodes frames", () => first.frames >= SOME_FRAMES);

    // A second getSDP moves the stream; a player given only the new SDP plays it.
    const secondPort = await freePort();
    const movedSdp = await copy.getSDP(TOKEN, secondPort);
    assert.match(movedSdp, /^v=0\r\no=- \d+ 2 IN IP4/, "the session version goes up");
    const movedPid = await stack.newSender(1);
    assert.ok(!processExists(copyPid), "the first sender is gone");
    const second = await stack.sdpReceiver(movedSdp);
    await eventually("the SDP player decodes frames", () => second.frames >= SOME_FRAMES);
    const stalled = first.frames;
    await delay(500);
    assert.equal(first.frames, stalled, "nothing arrives on the old port any more");

    // stop(): the sender process is gone when it returns, the packets stop, the controller and its topic go.
    const topic = await copy.getSyncTopic();
    assert.equal(await stack.topicExists(topic), true);
    await copy.stop();
    assert.ok(!processExists(movedPid), "the sender has ended and been reaped");
    await delay(300);
    const last = second.frames;
    await delay(700);
    assert.equal(second.frames, last, "no frames after stop()");
    await assert.rejects(copy.getSDP(TOKEN, secondPort), Ice.ObjectNotExistException);
    await eventually("the stream's topic is destroyed", async () => !(await stack.topicExists(topic)));

    // VP8 in WebM, re-encoded with x264.
    const reencode = (await stack.provider.getStream(await sha256sum(`${media}/${REENCODE_SAMPLE}`), TOKEN))!;
    const thirdPort = await freePort();
    const third = await stack.receiver(thirdPort);
    await reencode.getSDP(TOKEN, thirdPort);
    const reencodePid = await stack.newSender(2);
    await eventually("the log says re-encode", () => /sending \(re-encode, gst-launch-1\.0 pid \d+\)/.test(stack.log));
    await eventually("the receiver decodes re-encoded frames", () => third.frames >= SOME_FRAMES);
    await reencode.stop();
    assert.ok(!processExists(reencodePid));
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
  }
});

Deno.test("a file name that is pipeline text plays as a video and changes no pipeline (it is never parsed)", async () => {
  // gst-launch parses its arguments again: once this name in location= added a filesink that emptied the victim.
  // The victim is relative to the service's folder (a name cannot hold "/"), so it lives there, named by this test.
  const victim = `victim-${crypto.randomUUID()}.txt`;
  const name = `a" ! filesink location=${victim} fakesrc name=z.mp4`;
  const media = await mediaFolder([]);
  await Deno.copyFile(`${ROOT}media/${COPY_SAMPLE}`, `${media}/${name}`);
  await Deno.writeTextFile(`${ROOT}${victim}`, "precious");
  const stack = await Stack.start();
  try {
    await stack.startStreaming(media);
    await stack.startAuth();
    const controller = (await stack.provider.getStream(await sha256sum(`${media}/${name}`), TOKEN))!;
    const port = await freePort();
    const receiver = await stack.receiver(port);
    await controller.getSDP(TOKEN, port);
    await eventually("the receiver decodes frames", () => receiver.frames >= SOME_FRAMES);
    assert.equal(await Deno.readTextFile(`${ROOT}${victim}`), "precious", "the victim is untouched");
    await controller.stop();
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
    await Deno.remove(`${ROOT}${victim}`);
  }
});

Deno.test("revocation: requestAuthentication on the sync topic; a refresh in time keeps the stream, none ends it", async () => {
  // A real Authenticator: a controller believes a revocation only if the Authenticator no longer accepts the token
  // (see replication_test.ts for forged ones), so the tokens here really expire. They live long enough for the
  // stream to start, and for the check that a renewed token keeps it going (LIFETIME > the 2.5 s wait below).
  const LIFETIME = 5;
  const media = await mediaFolder([COPY_SAMPLE]);
  const stack = await Stack.start();
  try {
    await stack.startStreaming(media, ["--IceFlix.Controller.GracePeriod=1.5"]);
    const login = await stack.startAuthenticator({ alice: "secret" }, [`--IceFlix.Auth.TokenLifetime=${LIFETIME}`]);
    const logIn = () => login("alice");
    // Another client's token, revoked just before this stream's: only the second concerns the stream.
    await logIn();
    const token = await logIn();
    const controller = (await stack.provider.getStream(await sha256sum(`${media}/${COPY_SAMPLE}`), token))!;
    const sync = new SyncListener();
    const topic = await controller.getSyncTopic();
    await stack.events.subscribe(topic, stack.adapter.addWithUUID(sync));
    const port = await freePort();
    const receiver = await stack.receiver(port);
    await controller.getSDP(token, port);
    const pid = await stack.newSender(0);
    await eventually("frames arrive", () => receiver.frames >= SOME_FRAMES);

    await eventually("the controller asks for a new token", () => sync.requests >= 1, 2 * LIFETIME);
    await assert.rejects(controller.refreshAuthentication("forged"), IceFlix.Unauthorized);
    await controller.refreshAuthentication(await logIn());
    const asked = sync.requests;
    const before = receiver.frames;
    await delay(2500); // Longer than the grace period.
    assert.ok(receiver.frames > before, "frames keep arriving after the grace period");
    assert.equal(await controller.getSyncTopic(), topic, "the controller is still there");
    assert.equal(sync.requests, asked, "no more requests once a valid token came");

    // The renewed token expires too, and no refresh: the controller asks again through the grace period, then closes.
    await eventually("the controller asks again, more than once", () => sync.requests >= asked + 2, 2 * LIFETIME);
    await eventually("the controller is gone", async () => {
      try {
        await controller.getSyncTopic();
        return false;
      } catch (error) {
        if (error instanceof Ice.ObjectNotExistException) return true;
        throw error;
      }
    });
    assert.ok(!processExists(pid), "its sender has ended");
    await eventually("its topic is destroyed", async () => !(await stack.topicExists(topic)));
    await eventually(
      "the log says why",
      () => /closed \(no new token within 1\.5 s of the revocation\)/.test(stack.log),
    );
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
  }
});

/**
 * Starts the streaming service on `media` with a grace period of `grace` s, and a real Authenticator whose tokens live
 * `lifetime` s; plays the sample with alice's token. Returns how to log in again, the controller and the receiver.
 */
async function playWithTokens(stack: Stack, media: string, { lifetime, grace }: { lifetime: number; grace: number }) {
  await stack.startStreaming(media, [`--IceFlix.Controller.GracePeriod=${grace}`]);
  const login = await stack.startAuthenticator({ alice: "secret" }, [`--IceFlix.Auth.TokenLifetime=${lifetime}`]);
  const token = await login("alice");
  const controller = (await stack.provider.getStream(await sha256sum(`${media}/${COPY_SAMPLE}`), token))!;
  const port = await freePort();
  const receiver = await stack.receiver(port);
  await controller.getSDP(token, port);
  await eventually("frames arrive", () => receiver.frames >= SOME_FRAMES);
  return { login, controller, receiver };
}

Deno.test("revocation: a client that subscribes only after the request was published still gets one in time", async () => {
  // What a client sees when IceStorm restarts around a revocation: the first request reaches nobody, because the
  // client has not subscribed again yet. The controller asks again through the grace period.
  const LIFETIME = 3;
  const media = await mediaFolder([COPY_SAMPLE]);
  const stack = await Stack.start();
  try {
    const { login, controller, receiver } = await playWithTokens(stack, media, { lifetime: LIFETIME, grace: 4 });
    await eventually(
      "the controller asks for a new token",
      () => /asking the client for a new one/.test(stack.log),
      2 * LIFETIME,
    );
    const sync = new SyncListener();
    await stack.events.subscribe(await controller.getSyncTopic(), stack.adapter.addWithUUID(sync));
    await eventually("the late subscriber is asked too", () => sync.requests >= 1, 4);
    await controller.refreshAuthentication(await login("alice"));
    assert.match(stack.log, /authorised again; the stream goes on/);
    const before = receiver.frames;
    await eventually("frames keep arriving", () => receiver.frames > before + SOME_FRAMES);
    assert.doesNotMatch(stack.log, /no new token/);
    await controller.stop();
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
  }
});

Deno.test("revocation: a token that expires while IceStorm is down (its revoke lost) is checked once IceStorm is back", async () => {
  const LIFETIME = 3;
  const media = await mediaFolder([COPY_SAMPLE]);
  const stack = await Stack.start();
  try {
    await playWithTokens(stack, media, { lifetime: LIFETIME, grace: 1 });
    // The token expires while IceStorm is down, so its revoke reaches nobody; IceStorm comes back with no memory.
    await stack.icestorm.restart({ forget: true, whileDown: () => delay((LIFETIME + 2) * 1000) });
    await eventually(
      "the controller finds its token expired once it has subscribed again",
      () => /its token expired while IceStorm had lost the revocations/.test(stack.log),
      10,
    );
    await eventually(
      "with nobody to renew it, the stream ends",
      () => /closed \(no new token within 1 s/.test(stack.log),
    );
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
  }
});

Deno.test("interop: a Python client opens a stream, gets the SDP, receives video and stops it", async () => {
  const media = await mediaFolder([COPY_SAMPLE]);
  const stack = await Stack.start();
  try {
    await stack.startStreaming(media);
    await stack.startAuth();
    const id = await sha256sum(`${media}/${COPY_SAMPLE}`);
    const port = await freePort();
    const receiver = await stack.receiver(port);
    const output = await runPython("stream_from_python.py", [stack.providerText, id, TOKEN, String(port), "1.5"]);
    const lines = output.trimEnd().split("\n");
    assert.deepEqual(lines[0], `wrong media id no-such-id`);
    assert.match(lines[1], /^sync topic [0-9a-f-]{36}$/);
    assert.ok(lines.includes(`m=video ${port} RTP/AVP 96`), output);
    assert.equal(lines.at(-1), "stopped");
    assert.ok(receiver.frames >= SOME_FRAMES, `frames decoded while Python watched: ${receiver.frames}`);
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
  }
});

Deno.test("a stream reaching the end of its video is logged; shutting the service down ends every stream", async () => {
  const media = await mediaFolder([COPY_SAMPLE]);
  await makeClip(`${media}/short_clip.mp4`, 10);
  const stack = await Stack.start();
  try {
    await stack.startStreaming(media);
    await stack.startAuth();
    const short = (await stack.provider.getStream(await sha256sum(`${media}/short_clip.mp4`), TOKEN))!;
    await short.getSDP(TOKEN, await freePort());
    const shortPid = await stack.newSender(0);
    await eventually(
      "the end of the video is logged",
      () => /short_clip.*reached the end of the video/.test(stack.log),
    );
    assert.ok(!processExists(shortPid), "the ended sender was reaped");
    assert.match(await short.getSyncTopic(), /^[0-9a-f-]{36}$/, "the controller outlives its video");

    const long = (await stack.provider.getStream(await sha256sum(`${media}/${COPY_SAMPLE}`), TOKEN))!;
    const topic = await long.getSyncTopic();
    await long.getSDP(TOKEN, await freePort());
    const longPid = await stack.newSender(1);
    assert.equal((await stack.streaming.stop("SIGTERM")).code, 0);
    assert.ok(!processExists(longPid), "the service's senders end with it");
    assert.match(stack.log, /closed \(the service is shutting down\)/);
    assert.equal(await stack.topicExists(topic), false, "its streams' topics are destroyed");
  } finally {
    await stack.stop();
    await Deno.remove(media, { recursive: true });
  }
});
