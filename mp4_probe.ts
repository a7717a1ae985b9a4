/**
 * A quick look inside MP4 and QuickTime files: whether the first video track
 * is H.264 with its samples in the file, read from the box headers in a few
 * small reads, without starting a process.
 *
 * The answer is either "yes: H.264 in MP4, sent as it is" or "cannot tell";
 * for the latter (any other container or codec, fragmented or encrypted
 * files, anything malformed) the caller asks gst-discoverer-1.0, as before.
 * So this never calls playable a file that gst-discoverer would refuse to
 * send in copy mode (`qtdemux ! h264parse`): the movie box parses, its first
 * video track's sample entry is `avc1`/`avc3`, it lists samples, and every
 * chunk it points at starts inside the file.
 *
 * @module
 */

/** Reads up to `length` bytes at `offset` (fewer at the end of the file). */
export type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

/** The movie box is read whole: bigger than this (hours of samples), gst-discoverer is asked instead. */
const MAX_MOVIE_BOX = 64 << 20;

/** A box: its type, and where its payload lies (absolute in the file, or in a buffer). */
interface Box {
  type: string;
  start: number;
  end: number;
}

function fourcc(bytes: Uint8Array, at: number): string {
  return String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
}

/**
 * The box whose header is at `at` in `bytes`, `room` bytes before its parent
 * ends, with its payload given from `position` (where the header is in the
 * file or buffer); `undefined` if it does not fit.
 */
function boxAt(bytes: Uint8Array, at: number, room: number, position = at): Box | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const readable = Math.min(room, bytes.length - at);
  if (readable < 8) return undefined;
  let [size, header] = [view.getUint32(at), 8];
  if (size === 1) {
    if (readable < 16) return undefined;
    [size, header] = [Number(view.getBigUint64(at + 8)), 16];
  } else if (size === 0) size = room;
  if (size < header || size > room) return undefined;
  return { type: fourcc(bytes, at + 4), start: position + header, end: position + size };
}

/** The boxes in `bytes[start, end)`; `undefined` if one's size does not fit. */
function childBoxes(bytes: Uint8Array, start: number, end: number): Box[] | undefined {
  const boxes: Box[] = [];
  for (let at = start; at < end;) {
    const box = boxAt(bytes, at, end - at);
    if (!box) return undefined;
    boxes.push(box);
    at = box.end;
  }
  return boxes;
}

/** The first child of `box` of type `type`. */
function child(bytes: Uint8Array, box: Box | undefined, type: string): Box | undefined {
  return box && childBoxes(bytes, box.start, box.end)?.find((found) => found.type === type);
}

/** The top-level boxes of the file, headers only. */
async function topLevelBoxes(readAt: ReadAt, fileSize: number): Promise<Box[] | undefined> {
  const boxes: Box[] = [];
  for (let at = 0; at < fileSize;) {
    const box = boxAt(await readAt(at, 16), 0, fileSize - at, at);
    if (!box) return undefined;
    boxes.push(box);
    at = box.end;
  }
  return boxes;
}

/** Whether `stbl` (a sample table) lists samples, with every chunk starting before `fileSize`. */
function samplesInFile(bytes: Uint8Array, stbl: Box, fileSize: number): boolean {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const sizes = child(bytes, stbl, "stsz");
  // stsz: version and flags, the common sample size, the sample count.
  if (!sizes || sizes.end - sizes.start < 12 || view.getUint32(sizes.start + 8) === 0) return false;
  const offsets32 = child(bytes, stbl, "stco");
  const offsets64 = child(bytes, stbl, "co64");
  const offsets = offsets32 ?? offsets64;
  if (!offsets || offsets.end - offsets.start < 8) return false;
  const count = view.getUint32(offsets.start + 4);
  const width = offsets32 ? 4 : 8;
  if (count === 0 || offsets.start + 8 + count * width > offsets.end) return false;
  for (let i = 0, at = offsets.start + 8; i < count; i++, at += width) {
    const offset = offsets32 ? view.getUint32(at) : Number(view.getBigUint64(at));
    if (offset >= fileSize) return false;
  }
  return true;
}

/**
 * Whether the file (read through `readAt`, `fileSize` bytes) is an MP4 or
 * QuickTime movie whose first video track is H.264 with samples in the file;
 * `false` means "cannot tell" (ask gst-discoverer-1.0).
 */
export async function isMp4WithH264(readAt: ReadAt, fileSize: number): Promise<boolean> {
  const top = await topLevelBoxes(readAt, fileSize);
  const movie = top?.find((box) => box.type === "moov");
  if (!top || top[0]?.type !== "ftyp" || !movie || movie.end - movie.start > MAX_MOVIE_BOX) return false;
  const bytes = await readAt(movie.start, movie.end - movie.start);
  if (bytes.length !== movie.end - movie.start) return false;
  const tracks = childBoxes(bytes, 0, bytes.length)?.filter((box) => box.type === "trak") ?? [];
  for (const track of tracks) {
    const media = child(bytes, track, "mdia");
    const handler = child(bytes, media, "hdlr");
    // hdlr: version and flags, pre-defined, then the handler type.
    if (!handler || handler.end - handler.start < 12 || fourcc(bytes, handler.start + 8) !== "vide") continue;
    // The first video track is the one sent (demux.video_0).
    const table = child(bytes, child(bytes, media, "minf"), "stbl");
    const descriptions = child(bytes, table, "stsd");
    // stsd: version and flags, the entry count, then the first entry: its size and its format.
    if (!table || !descriptions || descriptions.end - descriptions.start < 16) return false;
    const format = fourcc(bytes, descriptions.start + 12);
    return (format === "avc1" || format === "avc3") && samplesInFile(bytes, table, fileSize);
  }
  return false;
}
