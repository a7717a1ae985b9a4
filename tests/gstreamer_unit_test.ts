/**
 * Unit tests of gstreamer.ts's pure parts (`deno task test:unit`): the
 * sender's arguments and the SDP. Real gst-launch senders and players run in
 * streaming_test.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { SENDER_INPUT, senderArguments, sessionDescription } from "../gstreamer.ts";

const DESTINATION = { host: "127.0.0.1", port: 5004 };

Deno.test("senderArguments: H.264 in MP4 is only re-packetised, to the destination, paced in real time", () => {
  const args = senderArguments(
    { container: "video/quicktime", video: "video/x-h264", copy: true },
    DESTINATION,
  );
  assert.equal(args[0], "-q");
  assert.ok(args.includes(`location=${SENDER_INPUT}`), "the file is read from a descriptor, never named");
  assert.ok(args.includes("qtdemux") && args.includes("h264parse"));
  assert.ok(!args.includes("x264enc") && !args.includes("decodebin"), "no re-encoding");
  const payloader = args.indexOf("rtph264pay");
  assert.deepEqual(args.slice(payloader, payloader + 3), ["rtph264pay", "config-interval=-1", "pt=96"]);
  assert.deepEqual(args.slice(-5), ["!", "udpsink", "host=127.0.0.1", "port=5004", "sync=true"]);
});

Deno.test("senderArguments: any other codec is decoded and encoded with x264, a key frame every second", () => {
  const args = senderArguments(
    { container: "video/webm", video: "video/x-vp8", copy: false },
    DESTINATION,
  );
  assert.ok(args.includes("decodebin") && args.includes("x264enc") && args.includes("key-int-max=30"));
  assert.ok(!args.includes("qtdemux"));
  assert.ok(args.includes(`location=${SENDER_INPUT}`));
  assert.ok(args.indexOf("x264enc") < args.indexOf("rtph264pay"));
  assert.deepEqual(args.slice(-5), ["!", "udpsink", "host=127.0.0.1", "port=5004", "sync=true"]);
});

Deno.test("sessionDescription: the SDP of one RTP/H.264 stream, CRLF lines, IPv4 or IPv6", () => {
  const sdp = sessionDescription({
    sessionId: 42,
    version: 3,
    origin: "192.168.1.2",
    title: "My\r\nFilm ",
    destination: { host: "::1", port: 6000 },
  });
  assert.deepEqual(sdp.split("\r\n"), [
    "v=0",
    "o=- 42 3 IN IP4 192.168.1.2",
    "s=My Film",
    "c=IN IP6 ::1",
    "t=0 0",
    "m=video 6000 RTP/AVP 96",
    "a=rtpmap:96 H264/90000",
    "a=fmtp:96 packetization-mode=1",
    "",
  ]);
  assert.ok(!sdp.replaceAll("\r\n", "").includes("\n"), "no bare line feed");
  const untitled = sessionDescription({
    sessionId: 1,
    version: 1,
    origin: "::1",
    title: " \n ",
    destination: DESTINATION,
  });
  assert.match(untitled, /\r\ns=-\r\n/);
  assert.ok(untitled.includes("\r\no=- 1 1 IN IP6 ::1\r\n"));
  assert.ok(untitled.includes("\r\nc=IN IP4 127.0.0.1\r\n"));
});
