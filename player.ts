/**
 * The client's local video player: turns the SDP text that a StreamController
 * returns (spec 2.4.1, `getSDP`) into pictures on the screen or, on a machine
 * with no display, into a running count of decoded frames.
 *
 * The SDP describes the RTP/H.264 flow the streaming service sends to our UDP
 * port. The player reads it on its standard input, so no file is written.
 *
 * @module
 */

/**
 * Which program plays the video (property `IceFlix.Client.Player`):
 * - `gst`: a gst-launch-1.0 pipeline, in a window when there is a display, headless otherwise (the default);
 * - `ffplay`: FFmpeg's player, in a window (needs a display and the ffmpeg package);
 * - `headless`: gst-launch-1.0 decoding every frame without showing it, and counting them.
 */
export type PlayerChoice = "gst" | "ffplay" | "headless";

/** The values of {@linkcode PlayerChoice}, for validating a property. */
export const PLAYER_CHOICES: readonly PlayerChoice[] = ["gst", "ffplay", "headless"];

/** A running player. */
export interface Player {
  /** What plays the video, in a few words for the user. */
  readonly description: string;
  /** Frames decoded so far, or `undefined` when the player does not report them (ffplay). */
  readonly frames: number | undefined;
  /** Resolves when the player process has ended, by itself or by {@linkcode stop}, with a one-line reason. */
  readonly ended: Promise<string>;
  /** Ends the player (SIGTERM, then SIGKILL if it lingers) and waits for it. */
  stop(): Promise<void>;
}

/** Whether an X11 or Wayland display is available for a video window. */
export function hasDisplay(): boolean {
  return Boolean(Deno.env.get("DISPLAY") || Deno.env.get("WAYLAND_DISPLAY"));
}

/** How long a player may take to end after SIGTERM before it gets SIGKILL (ms). */
const STOP_GRACE = 2000;

/**
 * Starts the player `choice` for the flow described by `sdp`.
 *
 * @param title shown in the window title where the player supports it
 * @throws Error with a readable message when the player program is not installed or cannot show a window
 */
export function startPlayer(choice: PlayerChoice, sdp: string, title: string): Player {
  if (choice === "ffplay") {
    if (!hasDisplay()) throw new Error("ffplay needs a display (DISPLAY is not set); use the gst or headless player");
    return spawnPlayer({
      description: "ffplay window",
      program: "ffplay",
      args: [
        ...["-hide_banner", "-loglevel", "error", "-window_title", title],
        // ffmpeg refuses to open UDP from an SDP read on a pipe unless these protocols are whitelisted.
        ...["-protocol_whitelist", "pipe,udp,rtp", "-fflags", "nobuffer", "-f", "sdp", "-i", "pipe:0"],
      ],
      windowed: true,
      countsFrames: false,
    }, sdp);
  }
  const windowed = choice === "gst" && hasDisplay();
  return spawnPlayer({
    description: windowed ? "gst-launch window" : "headless gst-launch (decodes, no window)",
    program: "gst-launch-1.0",
    args: [
      // -v prints the property changes of the pipeline, among them fpsdisplaysink's frame count.
      "-v",
      ...["fdsrc", "fd=0", "!", "sdpdemux", "latency=100"],
      // decodebin picks the RTP depayloader and the decoder the SDP calls for.
      ...["!", "decodebin", "!", "videoconvert"],
      ...["!", "fpsdisplaysink", "text-overlay=false", `video-sink=${windowed ? "autovideosink" : "fakesink"}`],
    ],
    windowed,
    countsFrames: true,
  }, sdp);
}

/** A player program and how to run it. */
interface PlayerCommand {
  description: string;
  program: string;
  /** Its arguments; it reads the SDP on stdin. */
  args: string[];
  /** Whether it opens a window (and so fails without a usable display). */
  windowed: boolean;
  /** Whether its output reports fpsdisplaysink's frame counts. */
  countsFrames: boolean;
}

/** Matches fpsdisplaysink's periodic report, e.g. `last-message = rendered: 120, dropped: 0, ...`. */
const FRAMES_REPORT = /last-message = rendered: (\d+)/;

function spawnPlayer({ description, program, args, windowed, countsFrames }: PlayerCommand, sdp: string): Player {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, { args, stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(
        `${program} is not installed${program === "ffplay" ? " (Debian package ffmpeg)" : "; run ./setup"}`,
      );
    }
    throw error;
  }
  let frames = countsFrames ? 0 : undefined;
  let lastError = "";
  let stopping = false;

  const writer = child.stdin.getWriter();
  // The player reads the whole SDP, then sets up its UDP receiver; an early exit surfaces in `ended`.
  writer.write(new TextEncoder().encode(sdp)).then(() => writer.close()).catch(() => {});

  const readLines = async (stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) => {
    let partial = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      const lines = (partial + text).split("\n");
      partial = lines.pop()!;
      lines.forEach(onLine);
    }
  };
  const onLine = (line: string) => {
    const report = FRAMES_REPORT.exec(line);
    if (report) frames = Number(report[1]);
    else if (/\berror\b/i.test(line)) lastError ||= line.trim();
  };
  const ended = Promise.all([readLines(child.stdout, onLine), readLines(child.stderr, onLine), child.status])
    .then(([, , status]) => {
      if (stopping) return "stopped";
      if (status.success) return `${program} ended`;
      const hint = windowed ? "; without a usable display, --player headless plays with no window" : "";
      return `${program} failed${lastError ? `: ${lastError}` : ` (exit code ${status.code})`}${hint}`;
    });

  return {
    description,
    get frames() {
      return frames;
    },
    ended,
    async stop() {
      stopping = true;
      try {
        child.kill("SIGTERM");
      } catch {
        return; // It had ended already.
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Ended in the meantime.
        }
      }, STOP_GRACE);
      await ended;
      clearTimeout(timer);
    },
  };
}
