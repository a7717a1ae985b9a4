/**
 * GStreamer for the streaming service: what a video file holds, the
 * `gst-launch-1.0` pipeline that sends it as RTP/H.264, the SDP text that
 * tells a player how to receive it, and the sender process itself.
 *
 * IceFlix does not implement a video protocol: every stream is one
 * `gst-launch-1.0` process, started with an argument array and stopped with a
 * signal. The video file is handed to it as a descriptor, never by name: see
 * {@linkcode SENDER_INPUT}.
 *
 * @module
 */
import { isMp4WithH264 } from "./mp4_probe.ts";
import type { Logger } from "./service.ts";

/** The RTP payload type of the H.264 stream, in the pipeline and in the SDP. */
const PAYLOAD_TYPE = 96;

/** What `gst-discoverer-1.0` found in a video file. */
export interface VideoFormat {
  /** The container's media type, e.g. `video/quicktime`, `video/webm`. */
  container: string;
  /** The first video stream's media type, e.g. `video/x-h264`, `video/x-vp8`. */
  video: string;
  /** H.264 in MP4/MOV: sent as it is. Anything else is decoded and re-encoded with x264. */
  copy: boolean;
}

/** What H.264 in MP4 is, as gst-discoverer-1.0 names it: sent as it is. */
const H264_IN_MP4: VideoFormat = Object.freeze({ container: "video/quicktime", video: "video/x-h264", copy: true });

/**
 * What `path` holds. H.264 in MP4 is recognised from its boxes
 * (mp4_probe.ts) in a few reads; anything else is asked of
 * `gst-discoverer-1.0`, one process per file, which reads only the headers.
 *
 * @throws Error saying why the file cannot be streamed (not a media file, no video stream)
 */
export async function probeVideo(path: string): Promise<VideoFormat> {
  if (await isMp4FileWithH264(path)) return H264_IN_MP4;
  const output = await new Deno.Command("gst-discoverer-1.0", { args: ["-v", path], stdin: "null" }).output();
  const text = new TextDecoder().decode(output.stdout);
  const failure = /An error was encountered while discovering the file\s*\n\s*(.*)/.exec(text);
  if (!output.success || failure) {
    throw new Error(failure?.[1].trim() || new TextDecoder().decode(output.stderr).trim() || "gst-discoverer failed");
  }
  // With -v the streams are listed with their caps: "container #0: video/quicktime, variant=..." / "video #1: video/x-h264, ...".
  const container = /^\s*container #\d+: ([^,\s]+)/m.exec(text)?.[1] ?? "";
  const video = /^\s*video #\d+: ([^,\s]+)/m.exec(text)?.[1];
  if (!video) throw new Error("no video stream");
  return { container, video, copy: container === "video/quicktime" && video === "video/x-h264" };
}

/** {@linkcode isMp4WithH264} on the file at `path`; `false` if it cannot be read (gst-discoverer will say why). */
async function isMp4FileWithH264(path: string): Promise<boolean> {
  try {
    using file = await Deno.open(path);
    const { size } = await file.stat();
    return await isMp4WithH264(async (offset, length) => {
      await file.seek(offset, Deno.SeekMode.Start);
      const bytes = new Uint8Array(Math.min(length, Math.max(0, size - offset)));
      let filled = 0;
      for (let count; filled < bytes.length && (count = await file.read(bytes.subarray(filled))) !== null;) {
        filled += count;
      }
      return bytes.subarray(0, filled);
    }, size);
  } catch {
    return false;
  }
}

/** Where a sender sends its RTP packets. */
export interface Destination {
  host: string;
  port: number;
}

/**
 * Where a sender reads its video: descriptor 3, opened on the file by
 * {@linkcode RtpSender} before gst-launch-1.0 starts. gst-launch joins its
 * arguments and parses them again as pipeline text, so a file name in
 * `location=` could add elements (`a" ! filesink location=victim ...` wrote
 * over a file). A descriptor leaves only text of our own making in the
 * pipeline, with nothing to clean up afterwards (unlike a link of our own
 * naming); filesrc opens it again through /dev/fd, so it stays seekable.
 */
export const SENDER_INPUT = "/dev/fd/3";

/**
 * The `gst-launch-1.0` arguments that send the video at {@linkcode SENDER_INPUT}
 * as RTP/H.264 to `destination`, paced in real time (`udpsink sync=true`).
 *
 * - Copy: the H.264 stream of an MP4/MOV file is only re-packetised, which costs
 *   about 1 % of a core.
 * - Re-encode: any other codec is decoded and encoded with x264, tuned for low
 *   latency, with a key frame every second so a player can join at any time.
 *
 * Both repeat SPS/PPS before every key frame (`config-interval=-1`): a player
 * that starts late still gets what it needs to decode.
 */
export function senderArguments(format: VideoFormat, destination: Destination): string[] {
  const source = format.copy
    ? ["filesrc", `location=${SENDER_INPUT}`, "!", "qtdemux", "name=demux", "demux.video_0", "!", "h264parse"]
    : [
      ...["filesrc", `location=${SENDER_INPUT}`, "!", "decodebin", "!", "videoconvert", "!", "video/x-raw,format=I420"],
      ...["!", "x264enc", "tune=zerolatency", "speed-preset=veryfast", "key-int-max=30"],
    ];
  return [
    "-q",
    ...source,
    ...["!", "rtph264pay", "config-interval=-1", `pt=${PAYLOAD_TYPE}`],
    ...["!", "udpsink", `host=${destination.host}`, `port=${destination.port}`, "sync=true"],
  ];
}

/** What {@linkcode sessionDescription} needs. */
export interface SessionOptions {
  /** Numeric session id (`o=` line) and its version, increased on every new SDP of the same session. */
  sessionId: number;
  version: number;
  /** The sender's address (`o=` line). */
  origin: string;
  /** The session name, shown by players (`s=` line). */
  title: string;
  /** The receiver's address and UDP port, where the packets go. */
  destination: Destination;
}

/**
 * The SDP (RFC 4566) of one RTP/H.264 stream: the text a player needs to
 * receive it. Saved as a `.sdp` file it plays with gst (`filesrc ! sdpdemux`),
 * `ffplay -protocol_whitelist file,udp,rtp` and VLC.
 */
export function sessionDescription(options: SessionOptions): string {
  const addressType = (address: string) => address.includes(":") ? "IP6" : "IP4";
  const { host, port } = options.destination;
  const title = options.title.replace(/[\r\n]+/g, " ").trim() || "-";
  return [
    "v=0",
    `o=- ${options.sessionId} ${options.version} IN ${addressType(options.origin)} ${options.origin}`,
    `s=${title}`,
    `c=IN ${addressType(host)} ${host}`,
    "t=0 0",
    `m=video ${port} RTP/AVP ${PAYLOAD_TYPE}`,
    `a=rtpmap:${PAYLOAD_TYPE} H264/90000`,
    `a=fmtp:${PAYLOAD_TYPE} packetization-mode=1`,
    "",
  ].join("\r\n");
}

/** How long a sender may take to end after SIGTERM before it is killed (ms). */
const STOP_GRACE = 200;

/** The stderr lines of a failed sender kept for its log message. */
const KEPT_ERROR_LINES = 3;

/**
 * Runs its arguments after the first as a command with the file named by the
 * first open as descriptor 3. The name is a positional parameter of sh: never
 * parsed, neither by sh nor by gst-launch.
 */
const WITH_INPUT_DESCRIPTOR = 'input="$1"; shift; exec "$@" 3<"$input"';

/**
 * One running `gst-launch-1.0` sender. When it ends by itself (end of the
 * file, or an error) the end is logged and `onEnd` called; {@linkcode stop}
 * ends it on purpose.
 */
export class RtpSender {
  readonly #process: Deno.ChildProcess;
  readonly #exited: Promise<void>;
  #stopping = false;

  /**
   * Starts `gst-launch-1.0 args` reading `path` as {@linkcode SENDER_INPUT}.
   *
   * @param description names the stream in log lines
   * @param onEnd called once the process has ended by itself
   */
  constructor(path: string, args: string[], description: string, logger: Logger, onEnd: () => void = () => {}) {
    // Through setpriv (util-linux): the kernel kills the sender when the service dies, even by SIGKILL, instead of
    // leaving it streaming to the client until the end of the video with nobody able to stop it. setpriv and sh
    // execute what follows in their own process, so the pid stays gst-launch's.
    this.#process = new Deno.Command("setpriv", {
      args: ["--pdeathsig", "KILL", "sh", "-c", WITH_INPUT_DESCRIPTOR, "sh", path, "gst-launch-1.0", ...args],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(this.#process.stderr).text();
    // Awaiting the status reaps the process: no zombie is left behind.
    this.#exited = Promise.all([this.#process.status, stderr]).then(([status, errors]) => {
      if (this.#stopping) return;
      if (status.success) {
        logger.info(`${description}: reached the end of the video`);
      } else {
        const last = errors.trim().split("\n").slice(-KEPT_ERROR_LINES).join(" / ");
        logger.warn(`${description}: gst-launch-1.0 ended with ${status.signal ?? `code ${status.code}`}: ${last}`);
      }
      onEnd();
    });
  }

  /** The process id of gst-launch-1.0 (setpriv and sh execute it in their own process). */
  get pid(): number {
    return this.#process.pid;
  }

  /**
   * Stops the sender and waits until the process is gone: SIGTERM (gst-launch
   * has no handler for it, so it ends at once), then SIGKILL if it lingers.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const lingering = new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), STOP_GRACE));
    if (await Promise.race([this.#exited.then(() => false), lingering])) this.#kill("SIGKILL");
    clearTimeout(timer);
    await this.#exited;
  }

  #kill(signal: Deno.Signal): void {
    try {
      this.#process.kill(signal);
    } catch {
      // It has ended already.
    }
  }
}
