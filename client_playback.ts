/**
 * Playing a title (spec 3.4): a StreamController from the title's provider,
 * our StreamerSync servant on its sync topic (it answers
 * `requestAuthentication()` with the current token), the SDP for a free UDP
 * port, and a local player fed with that SDP; then watching that video
 * arrives and that the controller still exists.
 *
 * @module
 */
import type { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import dgram from "node:dgram";
import { bounded, CALL_TIMEOUT, cancellable } from "./client_connection.ts";
import type { ClientSession } from "./client_session.ts";
import { clock, describeFailure, explain, UserError } from "./client_text.ts";
import type { EventChannel } from "./events.ts";
import { isUnreachable } from "./discovery.ts";
import { type Player, type PlayerChoice, startPlayer } from "./player.ts";
import type { Logger } from "./log.ts";

/**
 * After this long without a new frame (ms) playback ends by itself: RTP has no
 * end-of-stream, so silence is how the end of the title (or a blocked UDP port) shows.
 */
const VIDEO_SILENCE_LIMIT = 10_000;

/** A UDP port nobody uses right now, where the streaming service will send the video. */
function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    socket.once("error", reject);
    socket.bind(0, () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

/** Receives `requestAuthentication()` from the StreamController on its sync topic. */
class StreamSync extends IceFlix.StreamerSync {
  constructor(readonly onRequest: () => void) {
    super();
  }

  requestAuthentication(): void {
    this.onRequest();
  }
}

/** What a playback needs from the client. */
export interface PlaybackContext {
  adapter: Ice.ObjectAdapter;
  events: EventChannel;
  session: ClientSession;
  logger: Logger;
  player: PlayerChoice;
  print(text: string): void;
  /** The playback ended by itself (end of the title, the server, the player); `reason` says why. */
  ended(playback: Playback, reason: string): void;
}

/** One title playing. */
export class Playback {
  readonly media: IceFlix.Media;
  readonly startedAt = Date.now();
  readonly #context: PlaybackContext;
  readonly #controller: IceFlix.StreamControllerPrx;
  readonly #syncTopic: string;
  readonly #sync: Ice.ObjectPrx;
  readonly #player: Player;
  readonly #port: number;
  /** The frame count at the last check, and when it last grew (ms): a silent stream has ended. */
  #framesSeen = 0;
  #lastVideoAt = Date.now();
  #stopped = false;

  private constructor(
    context: PlaybackContext,
    media: IceFlix.Media,
    parts: { controller: IceFlix.StreamControllerPrx; syncTopic: string; sync: Ice.ObjectPrx; port: number },
    player: Player,
  ) {
    this.#context = context;
    this.media = media;
    this.#controller = parts.controller;
    this.#syncTopic = parts.syncTopic;
    this.#sync = parts.sync;
    this.#port = parts.port;
    this.#player = player;
    player.ended.then((reason) => {
      if (!this.#stopped) context.ended(this, `stream ended (${reason})`);
    });
  }

  /** Starts playing `media` (a tile the catalog just returned, naming its live provider). */
  static async start(context: PlaybackContext, media: IceFlix.Media, signal?: AbortSignal): Promise<Playback> {
    const provider = media.provider.ice_invocationTimeout(CALL_TIMEOUT);
    let controller: IceFlix.StreamControllerPrx;
    try {
      controller = (await context.session.withToken((token) => provider.getStream(media.id, token), signal))
        .ice_invocationTimeout(CALL_TIMEOUT);
    } catch (error) {
      if (!isUnreachable(error)) throw error;
      throw new UserError(
        `the streaming service holding «${media.info.name}» did not answer (${describeFailure(error)})`,
      );
    }
    let playback: Playback | undefined;
    const sync = context.adapter.addWithUUID(
      new StreamSync(() => {
        if (playback) playback.#onAuthenticationRequest();
      }),
    );
    let syncTopic = "";
    try {
      syncTopic = await cancellable(controller.getSyncTopic(), signal);
      await context.events.subscribe(syncTopic, sync);
      const port = await freeUdpPort();
      const sdp = await context.session.withToken((token) => controller.getSDP(token, port), signal);
      const player = startPlayer(context.player, sdp, media.info.name);
      playback = new Playback(context, media, { controller, syncTopic, sync, port }, player);
      context.print(`playing «${media.info.name}» on UDP port ${port} (player: ${player.description})`);
      return playback;
    } catch (error) {
      await release(context, controller, syncTopic, sync);
      throw error;
    }
  }

  /** Frames decoded so far, if the player counts them. */
  get frames(): number | undefined {
    return this.#player.frames;
  }

  /** How the state line shows it: `playing 0:12, 350 frames received`, `title` included if given. */
  describe(title: boolean): string {
    const frames = this.#player.frames;
    const silence = Math.floor((Date.now() - this.#lastVideoAt) / 1000);
    return `playing ${title ? `«${this.media.info.name}» ` : ""}${clock(Date.now() - this.startedAt)}` +
      (frames === undefined ? "" : `, ${frames} frames received`) +
      (silence >= 3 ? `, no video for ${silence} s` : "");
  }

  /** Stops the player, our subscription and the controller, saying so with `reason`. */
  async stop(reason: string): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    // The picture stops at once; telling the services may take a call timeout when they are gone.
    const released = release(this.#context, this.#controller, this.#syncTopic, this.#sync);
    await this.#player.stop();
    const frames = this.#player.frames === undefined ? "" : `, ${this.#player.frames} frames received`;
    this.#context.print(`${reason}: «${this.media.info.name}» after ${clock(Date.now() - this.startedAt)}${frames}`);
    await released;
  }

  /**
   * Called every second: notes new frames, ends playback after
   * VIDEO_SILENCE_LIMIT without any, and (`pingController`) checks that the
   * controller still exists: it is removed when its grace period runs out,
   * or when its service stops.
   */
  async check(pingController: boolean): Promise<void> {
    const frames = this.#player.frames;
    if (frames !== undefined && frames > this.#framesSeen) {
      this.#framesSeen = frames;
      this.#lastVideoAt = Date.now();
    } else if (frames !== undefined && Date.now() - this.#lastVideoAt >= VIDEO_SILENCE_LIMIT) {
      const seconds = VIDEO_SILENCE_LIMIT / 1000;
      this.#context.ended(
        this,
        frames === 0
          ? `no video arrived in ${seconds} s (can the streaming service reach UDP port ${this.#port} here?)`
          : `stream ended (no video for ${seconds} s: the title is over, or the stream was cut)`,
      );
      return;
    }
    if (!pingController) return;
    try {
      await bounded(this.#controller.ice_ping(), CALL_TIMEOUT);
    } catch (error) {
      if (!this.#stopped) this.#context.ended(this, `the server ended the stream (${describeFailure(error)})`);
    }
  }

  /** The controller's token was revoked: send it the current (renewed) one before its grace period ends. */
  async #onAuthenticationRequest(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.#context.session.withToken((token) => this.#controller.refreshAuthentication(token));
      this.#context.logger.info("the stream asked for a new token; sent it");
    } catch (error) {
      this.#context.print(`the stream asked for a new token and could not get one: ${explain(error)}`);
    }
  }
}

/** Ends our part of a stream on the services: the sync subscription and servant, the controller. */
async function release(
  context: PlaybackContext,
  controller: IceFlix.StreamControllerPrx,
  syncTopic: string,
  sync: Ice.ObjectPrx,
): Promise<void> {
  const unsubscribed = syncTopic === "" ? Promise.resolve() : context.events.unsubscribe(syncTopic, sync);
  await unsubscribed.then(() => controller.stop()).catch(() => {});
  try {
    context.adapter.remove(sync.ice_getIdentity());
  } catch {
    // Removed already.
  }
}
