/**
 * The quick MP4 look (mp4_probe.ts) on movies built box by box in memory: it
 * says "H.264" only for a whole movie whose first video track is H.264 with
 * samples in the file, and "cannot tell" for everything else.
 *
 * @module
 */
import assert from "node:assert/strict";
import { isMp4WithH264, type ReadAt } from "../mp4_probe.ts";

/** A box: 32-bit size, type, payload. */
function box(type: string, ...payload: Uint8Array[]): Uint8Array {
  const size = 8 + payload.reduce((total, part) => total + part.length, 0);
  const bytes = new Uint8Array(size);
  new DataView(bytes.buffer).setUint32(0, size);
  bytes.set(new TextEncoder().encode(type), 4);
  let at = 8;
  for (const part of payload) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}

/** Big-endian 32-bit words. */
function words(...values: number[]): Uint8Array {
  const bytes = new Uint8Array(values.length * 4);
  values.forEach((value, i) => new DataView(bytes.buffer).setUint32(i * 4, value));
  return bytes;
}

const text = (value: string) => new TextEncoder().encode(value);

/** A track of `handler` ("vide", "soun") whose first sample entry is `format`, with one chunk at `chunkOffset`. */
function track(handler: string, format: string, chunkOffset: number, samples = 1): Uint8Array {
  const hdlr = box("hdlr", words(0, 0), text(handler), words(0, 0, 0));
  const stsd = box("stsd", words(0, 1), box(format, new Uint8Array(78)));
  const stsz = box("stsz", words(0, 0, samples));
  const stco = box("stco", words(0, 1, chunkOffset));
  return box("trak", box("mdia", hdlr, box("minf", box("stbl", stsd, stsz, stco))));
}

/** A file: ftyp, moov of `tracks`, then an mdat of 1,000 bytes. */
function movie(...tracks: Uint8Array[]): Uint8Array {
  const parts = [box("ftyp", text("isom"), words(0)), box("moov", ...tracks), box("mdat", new Uint8Array(1000))];
  const bytes = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}

function reader(bytes: Uint8Array): ReadAt {
  return (offset, length) => Promise.resolve(bytes.slice(offset, offset + length));
}

const probe = (bytes: Uint8Array) => isMp4WithH264(reader(bytes), bytes.length);

Deno.test("mp4 probe: H.264 as the first video track, with its samples in the file", async () => {
  assert.equal(await probe(movie(track("vide", "avc1", 100))), true);
  assert.equal(await probe(movie(track("soun", "mp4a", 100), track("vide", "avc3", 100))), true, "audio first");
});

Deno.test("mp4 probe: cannot tell for other codecs, no samples, chunks past the end, truncated or not an MP4", async () => {
  assert.equal(await probe(movie(track("vide", "hvc1", 100))), false, "H.265");
  assert.equal(
    await probe(movie(track("vide", "mp4v", 100), track("vide", "avc1", 100))),
    false,
    "first video not H.264",
  );
  assert.equal(await probe(movie(track("soun", "mp4a", 100))), false, "no video");
  assert.equal(await probe(movie(track("vide", "avc1", 100, 0))), false, "no samples (fragmented)");
  assert.equal(await probe(movie(track("vide", "avc1", 1_000_000))), false, "a chunk past the end");
  const whole = movie(track("vide", "avc1", 100));
  for (const cut of [10, 40, whole.length - 1]) assert.equal(await probe(whole.slice(0, cut)), false, `cut at ${cut}`);
  assert.equal(await probe(whole.slice(16)), false, "no ftyp first: the movie box alone");
  assert.equal(await probe(text("hello, not a video\n")), false);
  assert.equal(await probe(new Uint8Array(0)), false);
});
