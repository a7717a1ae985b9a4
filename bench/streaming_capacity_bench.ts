/**
 * How many concurrent streams one provider sustains with every receiver
 * getting its full packet rate, and what stops it (issue 14).
 *
 * One streaming service (copy mode: the sample's H.264, lengthened to 2
 * minutes so that no sender ends during the ramp), the toy Authenticator,
 * and receivers that are plain UDP sockets in this process, each counting
 * its packets (nothing is decoded, so the receivers cost little). The
 * streams are added in steps; at each step every receiver's packets per
 * second are measured over a few seconds, against the rate of one stream
 * alone. The first step where a receiver gets less than 95 % of that rate
 * ends the ramp, and the machine's state then says why: CPU (the cores
 * busy), memory (little available) or descriptors (the service's open files
 * near its limit, or a refusal that says so). The bench stops at
 * {@linkcode MAX_STREAMS} streams whatever happens, to stay within a few
 * minutes; the provider's own default (`IceFlix.Streaming.MaxStreams`) is
 * printed beside the figure.
 *
 *   deno task bench streaming_capacity [MAX_STREAMS]
 *
 * @module
 */
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import dgram from "node:dgram";
import { machineResources, machineStreamLimit } from "../streaming.ts";
import { delay, openDescriptors, scratchDir, startBenchStreaming } from "../harness.ts";
import { cpuSeconds } from "./stats.ts";

/** The stream counts of the ramp, up to the ceiling. */
const STEPS = [1, 10, 25, 50, 100, 150, 200, 250, 300, 400];
/** The ramp's ceiling: the bench's time stays bounded (about 10 s a step). */
const MAX_STREAMS = Number(Deno.args[0] ?? 300);
/** Seconds after a step's streams started before its packets are counted, and seconds counted. */
const SETTLE = 2;
const WINDOW = 3;
/** A receiver gets its full rate if it gets at least this share of what one stream alone gets. */
const FULL_RATE = 0.95;
/** Seconds of video in the lengthened sample: longer than the whole ramp. */
const CLIP_SECONDS = 120;

/** A UDP socket of this process that counts the packets it receives. */
class PacketCounter {
  readonly #socket = dgram.createSocket("udp4");
  packets = 0;

  /** Resolves with the counter once its socket is bound (a free port on loopback). */
  static async open(): Promise<PacketCounter> {
    const counter = new PacketCounter();
    counter.#socket.on("message", () => counter.packets++);
    await new Promise<void>((resolve) => counter.#socket.bind(0, "127.0.0.1", resolve));
    return counter;
  }

  get port(): number {
    return this.#socket.address().port;
  }

  close(): void {
    this.#socket.close();
  }
}

/** The whole machine's busy and total CPU ticks so far (/proc/stat, first line). */
function machineTicks(): { busy: number; total: number } {
  const fields = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = fields[3] + fields[4]; // idle + iowait
  const total = fields.slice(0, 8).reduce((sum, value) => sum + value, 0);
  return { busy: total - idle, total };
}

/** A field of /proc/<pid>/status, in kB (0 if the process is gone). */
function statusKilobytes(pid: number, field: string): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** MB of memory available now, and in all. */
function availableMegabytes(): number {
  return Deno.systemMemoryInfo().available / 2 ** 20;
}
const totalMegabytes = Deno.systemMemoryInfo().total / 2 ** 20;

/** Open descriptors of process `pid`, and its limit. */
function descriptors(pid: number): { open: number; limit: number } {
  const limit = Number(/^Max open files\s+(\d+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/limits`))![1]);
  return { open: openDescriptors(pid), limit };
}

/** Writes the sample (./setup's test_pattern.mp4: same caps and bitrate) lengthened to `seconds`. */
async function longSample(path: string, seconds: number): Promise<void> {
  const output = await new Deno.Command("gst-launch-1.0", {
    args: [
      ...["-q", "videotestsrc", `num-buffers=${seconds * 30}`, "pattern=smpte", "!"],
      ...["video/x-raw,width=640,height=360,framerate=30/1", "!", "x264enc", "bitrate=600", "key-int-max=30", "!"],
      ...["video/x-h264,profile=main", "!", "mp4mux", "!", "filesink", `location=${path}`],
    ],
  }).output();
  if (!output.success) throw new Error(new TextDecoder().decode(output.stderr));
}

async function sha256sum(path: string): Promise<string> {
  const output = await new Deno.Command("sha256sum", { args: [path] }).output();
  return new TextDecoder().decode(output.stdout).split(" ")[0];
}

const [load] = Deno.readTextFileSync("/proc/loadavg").split(" ");
console.log(`capacity: load average ${load} on ${navigator.hardwareConcurrency} core(s) at start`);
const folder = await scratchDir("bench-capacity-");
await longSample(`${folder}/long_test_pattern.mp4`, CLIP_SECONDS);
const id = await sha256sum(`${folder}/long_test_pattern.mp4`);

const { streaming, provider, stop } = await startBenchStreaming(folder, MAX_STREAMS);
const counters: PacketCounter[] = [];
const controllers: IceFlix.StreamControllerPrx[] = [];
try {
  const servicePid = streaming.child.process.pid;
  const senderPids = () => [...streaming.child.stderr.matchAll(/gst-launch-1\.0 pid (\d+)/g)].map((m) => Number(m[1]));

  let fullRate = 0;
  let sustained = 0;
  let stop: string | undefined;
  for (const count of STEPS.filter((step) => step <= MAX_STREAMS)) {
    let refusal: string | undefined;
    try {
      while (controllers.length < count) {
        const controller = (await provider.getStream(id, "toy-token"))!;
        const counter = await PacketCounter.open();
        controllers.push(controller);
        counters.push(counter);
        await controller.getSDP("toy-token", counter.port);
      }
    } catch (error) {
      refusal = error instanceof Error ? error.message : String(error);
    }
    await delay(SETTLE * 1000);
    const [packetsBefore, ticksBefore, benchBefore] = [
      counters.map((c) => c.packets),
      machineTicks(),
      cpuSeconds(Deno.pid),
    ];
    const senders = senderPids();
    const sendersBefore = senders.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    await delay(WINDOW * 1000);
    const rates = counters.map((c, i) => (c.packets - packetsBefore[i]) / WINDOW);
    const ticksAfter = machineTicks();
    const busy = (ticksAfter.busy - ticksBefore.busy) / (ticksAfter.total - ticksBefore.total);
    const senderCpu = (senders.reduce((sum, pid) => sum + cpuSeconds(pid), 0) - sendersBefore) / WINDOW;
    const benchCpu = (cpuSeconds(Deno.pid) - benchBefore) / WINDOW;
    const live = senders.filter((pid) => statusKilobytes(pid, "VmRSS") > 0);
    const rss = live.reduce((sum, pid) => sum + statusKilobytes(pid, "VmRSS"), 0) / 1024 / Math.max(1, live.length);
    const files = descriptors(servicePid);
    const memory = availableMegabytes();
    if (count === 1) fullRate = rates[0];
    const slowest = Math.min(...rates);
    const starved = rates.filter((rate) => rate < FULL_RATE * fullRate).length;
    console.log(
      `capacity: ${controllers.length} streams: slowest receiver ${slowest.toFixed(0)} packets/s ` +
        `(one alone: ${fullRate.toFixed(0)}), ${starved} below ${FULL_RATE * 100} %; machine CPU ` +
        `${(100 * busy).toFixed(0)} % busy, senders ${(100 * senderCpu / live.length).toFixed(2)} % of a core and ` +
        `${rss.toFixed(1)} MB RSS each, receivers (this process) ${(100 * benchCpu).toFixed(0)} % of a core; ` +
        `${memory.toFixed(0)} MB available; service descriptors ${files.open} of ${files.limit}`,
    );
    if (starved > 0 || refusal !== undefined) {
      stop = refusal !== undefined && /descriptor|EMFILE|too many open files/i.test(refusal)
        ? `descriptors (${refusal})`
        : refusal !== undefined
        ? `a refusal: ${refusal}`
        : files.open > 0.9 * files.limit
        ? `descriptors (${files.open} of ${files.limit} open)`
        : memory < 0.05 * totalMegabytes
        ? `memory (${memory.toFixed(0)} MB available)`
        : busy > 0.9
        ? `CPU (${(100 * busy).toFixed(0)} % of the machine busy)`
        : `none of CPU, memory or descriptors is exhausted (CPU ${(100 * busy).toFixed(0)} % busy): packets lost ` +
          "on the way (receivers in this process, socket buffers)";
      break;
    }
    sustained = controllers.length;
  }
  console.log(
    `capacity: one provider sustains ${sustained} concurrent copy-mode streams at full rate; ` +
      (stop ? `it stops at the next step: ${stop}` : `the bench's ceiling (${MAX_STREAMS}) was reached first`),
  );
  const sized = machineStreamLimit(machineResources());
  console.log(`capacity: the default IceFlix.Streaming.MaxStreams here: ${sized.streams} (${sized.reasons})`);
} finally {
  await Promise.all(controllers.map((controller) => controller.stop().catch(() => {})));
  counters.forEach((counter) => counter.close());
  await stop();
  await Deno.remove(folder, { recursive: true });
}
