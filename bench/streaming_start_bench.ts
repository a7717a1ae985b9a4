/**
 * The streaming service's start until every file is announced, for 200 files
 * of 250 KB and 20 files of 10 MB (H.264 MP4, each with bytes of its own):
 * cold (no scan cache), beside `sha256sum` over the same files plus the start
 * of the service on an empty folder; and a restart with unchanged files (the
 * scan cache), for those sets and for 1,000 files, beside the empty folder.
 *
 * With `BENCH_BASE=<another clone>/` (set up with `./setup`) that clone's
 * service is measured cold too, in the same rounds. Every figure is a median
 * over the rounds with its spread (min-max), as a ratio.
 *
 * @module
 */
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { EventChannel, TOPICS } from "../events.ts";
import { createLogger } from "../service.ts";
import { Child, IceStormServer, ROOT, scratchDir, testCommunicator } from "../harness.ts";
import { percentile } from "./stats.ts";

const ROUNDS = 3;
const BASE = Deno.env.get("BENCH_BASE");

/** Counts `newMedia` events. */
class AnnouncementCount extends IceFlix.StreamAnnounces {
  count = 0;
  #waiter: { target: number; done: () => void } | undefined;

  newMedia(): void {
    this.count++;
    if (this.#waiter && this.count >= this.#waiter.target) this.#waiter.done();
  }

  /** Resolves once `target` announcements have arrived since the last reset. */
  reached(target: number): Promise<void> {
    if (this.count >= target) return Promise.resolve();
    return new Promise((done) => this.#waiter = { target, done });
  }
}

/** Writes an H.264 MP4 of `frames` frames of snow at `width`x`height`, at `kbps` kbit/s (30 frames/s). */
async function makeClip(path: string, frames: number, width: number, height: number, kbps: number): Promise<void> {
  const output = await new Deno.Command("gst-launch-1.0", {
    args: [
      ...["-q", "videotestsrc", `num-buffers=${frames}`, "pattern=snow", "!"],
      ...[
        `video/x-raw,width=${width},height=${height},framerate=30/1`,
        "!",
        "x264enc",
        "key-int-max=30",
        `bitrate=${kbps}`,
      ],
      ...["!", "mp4mux", "!", "filesink", `location=${path}`],
    ],
  }).output();
  if (!output.success) throw new Error(new TextDecoder().decode(output.stderr));
}

/** A folder of `count` copies of `clip`, each with 8 bytes of its own in the middle (in the media data). */
async function copies(folder: string, clip: string, count: number): Promise<void> {
  await Deno.mkdir(folder, { recursive: true });
  const bytes = await Deno.readFile(clip);
  for (let i = 0; i < count; i++) {
    new DataView(bytes.buffer).setFloat64(bytes.length >> 1, i);
    await Deno.writeFile(`${folder}/clip-${String(i).padStart(4, "0")}.mp4`, bytes);
  }
}

/** `median (min-max)` of `values`. */
function spread(values: number[], digits = 2): string {
  const text = (value: number) => value.toFixed(digits);
  return `${text(percentile(values, 50))} (${text(Math.min(...values))}-${text(Math.max(...values))})`;
}

const work = await scratchDir("streaming-start-bench-");
const icestorm = await IceStormServer.start();
const { communicator, adapter } = await testCommunicator([icestorm.option]);
const events = new EventChannel(communicator, createLogger("bench", communicator.getProperties()));
const announcements = new AnnouncementCount();
await events.subscribe(TOPICS.mediaAnnouncements, adapter.addWithUUID(announcements));

/**
 * Milliseconds from spawning the streaming service of clone `root` on `folder`
 * until `files` announcements have arrived (and it is ready).
 */
async function startUntilAnnounced(root: string, folder: string, files: number, cache?: string): Promise<number> {
  announcements.count = 0;
  const started = performance.now();
  const child = new Child(`${root}run_service`, [
    "streaming",
    icestorm.option,
    `--IceFlix.Streaming.MediaDir=${folder}`,
    ...cache ? [`--IceFlix.Streaming.ScanCache=${cache}`] : [],
  ], { cwd: root });
  try {
    await child.line(1, 300);
    await announcements.reached(files);
    return performance.now() - started;
  } finally {
    await child.stop();
  }
}

async function sha256sum(folder: string): Promise<number> {
  const files = [...Deno.readDirSync(folder)].map((entry) => `${folder}/${entry.name}`);
  const started = performance.now();
  const output = await new Deno.Command("sha256sum", { args: files, stdout: "null" }).output();
  if (!output.success) throw new Error("sha256sum failed");
  return performance.now() - started;
}

try {
  const small = `${work}/small.mp4`;
  const big = `${work}/big.mp4`;
  await makeClip(small, 30, 320, 240, 2000);
  await makeClip(big, 270, 640, 480, 9000);
  const sets = [
    { name: "200 files of 250 KB", folder: `${work}/set-200`, files: 200, clip: small },
    { name: "20 files of 10 MB", folder: `${work}/set-20`, files: 20, clip: big },
    { name: "1,000 files of 250 KB", folder: `${work}/set-1000`, files: 1000, clip: small, warmOnly: true },
  ];
  for (const set of sets) await copies(set.folder, set.clip, set.files);
  const empty = `${work}/empty`;
  await Deno.mkdir(empty);
  console.log(
    `clips: ${Math.round(Deno.statSync(small).size / 1000)} KB and ${Math.round(Deno.statSync(big).size / 1e6)} MB`,
  );

  for (const set of sets) {
    const cache = `${work}/cache-${set.files}.json`;
    const [cold, base, warm] = [[] as number[], [] as number[], [] as number[]];
    for (let round = 0; round < ROUNDS; round++) {
      const emptyStart = await startUntilAnnounced(ROOT, empty, 0);
      const hashing = await sha256sum(set.folder);
      await Deno.remove(cache).catch(() => {});
      const ours = set.warmOnly ? undefined : await startUntilAnnounced(ROOT, set.folder, set.files, cache);
      if (set.warmOnly) await startUntilAnnounced(ROOT, set.folder, set.files, cache);
      const restart = await startUntilAnnounced(ROOT, set.folder, set.files, cache);
      const theirs = BASE && !set.warmOnly ? await startUntilAnnounced(BASE, set.folder, set.files) : undefined;
      if (ours !== undefined) cold.push(ours / (hashing + emptyStart));
      if (theirs !== undefined) base.push(theirs / (hashing + emptyStart));
      warm.push((restart - emptyStart) / 1000);
      console.log(
        `${set.name}, round ${round + 1}: empty folder ${Math.round(emptyStart)} ms, sha256sum ${
          Math.round(hashing)
        } ms` +
          (ours !== undefined ? `, cold start ${Math.round(ours)} ms` : "") +
          `, restart (cache) ${Math.round(restart)} ms` +
          (theirs !== undefined ? `, base ${Math.round(theirs)} ms` : ""),
      );
    }
    if (cold.length) console.log(`${set.name}: cold start / (sha256sum + empty start) ${spread(cold)}x`);
    if (base.length) console.log(`${set.name}: base start / (sha256sum + empty start) ${spread(base)}x`);
    console.log(`${set.name}: restart with unchanged files minus empty start ${spread(warm)} s`);
  }
} finally {
  await events.close();
  await communicator.destroy();
  await icestorm.stop();
  await Deno.remove(work, { recursive: true });
}
