/**
 * The streaming service's costs:
 *
 * - scanning: SHA-256 throughput of the provider's hashing against
 *   `sha256sum` on the same file, and the process's peak RSS meanwhile;
 * - streaming: for copy (H.264 MP4) and re-encode (VP8 WebM), with 1 and 8
 *   concurrent streams, the time from getSDP to the first decoded frame at a
 *   receiver, and the CPU the senders and the service use per stream.
 *
 * Receivers decode on the same machine, so they compete for the CPU too.
 *
 * @module
 */
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { sha256File } from "../streaming.ts";
import { Child, delay, eventually, freePort, ROOT, RtpReceiver, startBenchStreaming } from "../harness.ts";
import { cpuSeconds, percentile } from "./stats.ts";

const HASHED_MEGABYTES = 512;
/** Seconds of streaming over which CPU use is measured (the samples last 10 s). */
const CPU_WINDOW = 3;

/** Resident set size figures of this process from /proc/self/status (MB). */
function memory(field: "VmRSS" | "VmHWM"): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1]) / 1024;
}

async function benchScan(): Promise<void> {
  const file = await Deno.makeTempFile({ prefix: "iceflix-bench-", suffix: ".bin" });
  try {
    using output = await Deno.open(file, { write: true });
    const chunk = new Uint8Array(1 << 20);
    // getRandomValues fills at most 64 KiB a call; the bytes' values do not matter to SHA-256's speed anyway.
    for (let offset = 0; offset < chunk.length; offset += 65536) {
      crypto.getRandomValues(chunk.subarray(offset, offset + 65536));
    }
    for (let i = 0; i < HASHED_MEGABYTES; i++) await output.write(chunk);
    const before = memory("VmRSS");
    // Writing 5 to clear_refs resets the peak RSS (VmHWM) of this process to its current RSS.
    Deno.writeTextFileSync("/proc/self/clear_refs", "5");
    let start = performance.now();
    await sha256File(file);
    const ours = (performance.now() - start) / 1000;
    const peak = memory("VmHWM");
    start = performance.now();
    await new Deno.Command("sha256sum", { args: [file], stdout: "null" }).output();
    const theirs = (performance.now() - start) / 1000;
    console.log(
      `scan: SHA-256 of ${HASHED_MEGABYTES} MB (page cache warm): ${Math.round(HASHED_MEGABYTES / ours)} MB/s; ` +
        `sha256sum: ${Math.round(HASHED_MEGABYTES / theirs)} MB/s`,
    );
    console.log(`scan: peak RSS while hashing: ${peak.toFixed(0)} MB (${before.toFixed(0)} MB before)`);
  } finally {
    await Deno.remove(file);
  }
}

/** What opening `count` streams of `id` at once costs. */
async function benchStreams(
  mode: string,
  id: string,
  count: number,
  provider: IceFlix.StreamProviderPrx,
  service: Child,
): Promise<void> {
  const controllers = await Promise.all(Array.from({ length: count }, () => provider.getStream(id, "toy-token")));
  const ports = await Promise.all(controllers.map(() => freePort()));
  const receivers = await Promise.all(ports.map((port) => RtpReceiver.onPort(port)));
  const pidsBefore = service.stderr.match(/gst-launch-1\.0 pid \d+/g)?.length ?? 0;
  try {
    const firstFrames = await Promise.all(controllers.map(async (controller, i) => {
      const start = performance.now();
      await controller!.getSDP("toy-token", ports[i]);
      while (receivers[i].frames === 0) await delay(2);
      return performance.now() - start;
    }));
    await eventually("every sender's pid is logged", () => senderPids(service).length >= pidsBefore + count);
    const senders = senderPids(service).slice(pidsBefore);
    const servicePid = service.process.pid;
    const startCpu = senders.reduce((total, pid) => total + cpuSeconds(pid), 0);
    const startServiceCpu = cpuSeconds(servicePid);
    await delay(CPU_WINDOW * 1000);
    const senderCpu = senders.reduce((total, pid) => total + cpuSeconds(pid), 0) - startCpu;
    const serviceCpu = cpuSeconds(servicePid) - startServiceCpu;
    const percent = (seconds: number) => (100 * seconds / CPU_WINDOW).toFixed(1);
    console.log(
      `stream ${mode}, ${count} concurrent: getSDP to first decoded frame ${
        percentile(firstFrames, 50).toFixed(0)
      } ms ` +
        `median, ${Math.max(...firstFrames).toFixed(0)} ms max; sender CPU ${percent(senderCpu / count)} % ` +
        `of a core per stream; service process ${percent(serviceCpu)} % in all`,
    );
  } finally {
    await Promise.all(controllers.map((controller) => controller!.stop()));
    await Promise.all(receivers.map((receiver) => receiver.stop()));
  }
}

function senderPids(service: Child): number[] {
  return [...service.stderr.matchAll(/gst-launch-1\.0 pid (\d+)/g)].map((match) => Number(match[1]));
}

async function sha256sum(path: string): Promise<string> {
  const output = await new Deno.Command("sha256sum", { args: [path] }).output();
  return new TextDecoder().decode(output.stdout).split(" ")[0];
}

await benchScan();

const { streaming, provider, stop } = await startBenchStreaming(`${ROOT}media`, 16);
try {
  const samples = { copy: "test_pattern.mp4", "re-encode": "bouncing_ball.webm" };
  for (const [mode, file] of Object.entries(samples)) {
    const id = await sha256sum(`${ROOT}media/${file}`);
    for (const count of [1, 8]) await benchStreams(mode, id, count, provider, streaming.child);
  }
} finally {
  await stop();
}
