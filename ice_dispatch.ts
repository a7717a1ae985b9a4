/**
 * Cheaper versions of two steps the pinned ice@3.7.110 takes for every
 * request it receives, giving the same results; applied when this module is
 * first imported (acceptor.ts does, so every IceFlix process has them).
 *
 * A CPU profile of `ice_ping` to Main (bench/ping_bench.ts) showed, beside
 * the socket write, these two among the largest costs of Ice's own dispatch:
 * - `Buffer.getString` builds each string a character at a time and decodes
 *   it with `decodeURIComponent(escape(s))`: an identity's name and category
 *   and the operation name are three strings per request. Here, ASCII (every
 *   name IceFlix uses) is read directly and other text with a strict
 *   `TextDecoder`; whatever that decoder refuses (malformed UTF-8) still goes
 *   to Ice's own code, so it fails exactly as before.
 * - The servant lookup hashes and compares the request's `Ice.Identity` with
 *   the generic struct code (`for ... in` over the members, a type test per
 *   member). Here the two members are hashed and compared directly: the same
 *   hash values, the same equality.
 *
 * @module
 */
import { Ice } from "ice";

/** The parts of Ice's byte buffer (`Ice.Buffer`, internal) used here. */
interface ByteBuffer {
  b: ArrayBuffer;
  _position: number;
  _limit: number;
  getString(length: number): string;
}

/** The parts of `Ice.HashUtil` (internal) used here. */
interface HashUtil {
  addString(hash: number, text: string): number;
}

const internals = Ice as unknown as { Buffer: { prototype: ByteBuffer }; HashUtil: HashUtil };
const buffer = internals.Buffer.prototype;
const identity = Ice.Identity.prototype as Ice.Identity & { hashCode(): number };
const iceGetString = buffer.getString;
if (typeof iceGetString !== "function" || typeof identity.hashCode !== "function") {
  throw new Error("ice_dispatch.ts: this ice package is not the 3.7.110 it was written for");
}

/** Strings up to this many bytes are built with one `String.fromCharCode` call when they are ASCII. */
const SHORT_STRING = 64;
/** Strict (malformed input throws) and keeping a leading byte order mark, as Ice's own decoding does. */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

buffer.getString = function (this: ByteBuffer, length: number): string {
  if (this._position + length > this._limit) return iceGetString.call(this, length);
  const bytes = new Uint8Array(this.b, this._position, length);
  let text: string;
  if (length <= SHORT_STRING && bytes.every((byte) => byte < 0x80)) {
    text = String.fromCharCode.apply(null, bytes as unknown as number[]);
  } else {
    try {
      text = utf8.decode(bytes);
    } catch {
      return iceGetString.call(this, length);
    }
  }
  this._position += length;
  return text;
};

const { addString } = internals.HashUtil;
// The generic struct hash over the members in their declared order (name, category), from the same seed.
identity.hashCode = function (this: Ice.Identity): number {
  return addString(addString(5381, this.name), this.category);
};
identity.equals = function (this: Ice.Identity, other: unknown): boolean {
  if (this === other) return true;
  if (other === null || other === undefined) return false;
  const { name, category } = other as Ice.Identity;
  return this.name === name && this.category === category;
};
