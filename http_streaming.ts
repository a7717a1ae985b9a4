/**
 * Video for browsers (issue 12): the streaming service also serves its files
 * over HTTP, with `Range` requests, so that a `<video>` element plays them.
 *
 * Facet `HttpStreaming` of the StreamProvider object (`slice/web.ice`):
 * `getHttpStream(id, token)` opens a playback exactly as `getStream` does
 * (same token check, same stream limit, a real StreamController) and returns
 * its controller and a URL, `http://HOST:PORT/media/<id>?ticket=<random>`.
 * The URL is served while the controller exists: the controller's own rules
 * apply, so a revoked token asks for a new one on the sync topic and
 * `refreshAuthentication` within the grace period keeps the URL served; after
 * the grace period, or `stop()`, the URL is refused with 403 and transfers in
 * progress are cut. The ticket is not the token, so a URL (in a browser's
 * history, say) cannot edit the catalog or open other streams.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
// @ts-types="./slice/web.d.ts"
import { IceFlixWeb } from "./slice/web.js";
import { StreamController, type StreamMedia } from "./controller.ts";
import type { VideoFormat } from "./gstreamer.ts";
import { connectionAddresses } from "./peer_address.ts";
import { describeError, type Logger } from "./service.ts";

/** The facet name of the HTTP streaming servant on the StreamProvider object. */
export const HTTP_STREAMING_FACET = "HttpStreaming";

/** Bytes read from the file per chunk of a response: a stopped playback is cut within one chunk. */
const CHUNK = 64 * 1024;

/** Media types of the containers gst-discoverer names, as browsers know them. */
const CONTAINER_TYPES: Record<string, string> = {
  "video/quicktime": "video/mp4",
  "video/webm": "video/webm",
  "video/x-matroska": "video/x-matroska",
  "application/ogg": "video/ogg",
  "video/ogg": "video/ogg",
};

/** RFC 6381 codec strings for the video codecs a browser may play. */
const CODECS: Record<string, string> = {
  "video/x-h264": "avc1.4d401e",
  "video/x-vp8": "vp8",
  "video/x-vp9": "vp9",
  "video/x-av1": "av01.0.05M.08",
  "video/x-theora": "theora",
};

/**
 * The type a browser's `canPlayType` is asked about, e.g. `video/webm; codecs="vp8"`;
 * `application/octet-stream` for containers no browser plays.
 */
export function browserMediaType(format: VideoFormat): string {
  const container = CONTAINER_TYPES[format.container];
  if (!container) return "application/octet-stream";
  const codec = CODECS[format.video];
  return codec ? `${container}; codecs="${codec}"` : container;
}

/** A byte range of a file, both ends included. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Reads a `Range` header for a file of `size` bytes: `undefined` when there is
 * none (the whole file), the range when it is one satisfiable range.
 *
 * @throws HttpError 400 if it is malformed, 416 if it is several ranges or lies past the end
 */
export function parseRange(header: string | null, size: number): ByteRange | undefined {
  if (header === null) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === "" && match[2] === "")) {
    if (/^bytes=[\d\s,-]+$/.test(header.trim()) && header.includes(",")) {
      throw new HttpError(416, "only one byte range per request is served", size);
    }
    throw new HttpError(400, `malformed Range header "${header.slice(0, 80)}": expected bytes=START-END`);
  }
  let start: number, end: number;
  if (match[1] === "") { // bytes=-N: the last N bytes
    const length = Number(match[2]);
    if (length === 0) throw new HttpError(416, "an empty suffix range (bytes=-0) selects nothing", size);
    start = Math.max(0, size - length);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
    if (match[2] !== "" && Number(match[2]) < start) {
      throw new HttpError(400, `malformed Range header "${header.slice(0, 80)}": the end is before the start`);
    }
  }
  if (start >= size) throw new HttpError(416, `the range starts past the end of the file (${size} bytes)`, size);
  return { start, end };
}

/** A refused request: its status and a sentence that says why. */
export class HttpError extends Error {
  readonly status: number;
  /** For 416: the file's size, sent as `Content-Range: bytes * /size`. */
  readonly size: number | undefined;

  constructor(status: number, message: string, size?: number) {
    super(message);
    this.status = status;
    this.size = size;
  }
}

/** A URL handed out: the title it plays, whether its playback (controller) is still open, and a way to keep it so. */
interface Ticket {
  mediaId: string;
  isOpen: () => boolean;
  /** Tells the controller its stream is in use (a request, a chunk sent), so it does not close as idle. */
  touch: () => void;
}

/** What the HTTP server and its facet need from the streaming service. */
export interface HttpStreamingOptions {
  adapter: Ice.ObjectAdapter;
  /** The StreamProvider's identity: the facet is added to that object. */
  identity: Ice.Identity;
  properties: Ice.Properties;
  logger: Logger;
  /** The provider's videos, as they are now. */
  media: (id: string) => StreamMedia | undefined;
  /** The provider's own getStream: the token check, the stream limit, a new controller. */
  getStream: (id: string, token: string) => Promise<IceFlix.StreamControllerPrx | null>;
}

/**
 * Starts the HTTP server (`IceFlix.Streaming.Http.Host`, default 127.0.0.1;
 * `IceFlix.Streaming.Http.Port`, default 0: any free port) and adds the
 * `HttpStreaming` facet. Returns a function that stops the server.
 */
export async function serveHttpStreaming(options: HttpStreamingOptions): Promise<() => Promise<void>> {
  const { adapter, identity, properties, logger } = options;
  const host = properties.getPropertyWithDefault("IceFlix.Streaming.Http.Host", "127.0.0.1");
  const port = properties.getPropertyAsIntWithDefault("IceFlix.Streaming.Http.Port", 0);
  const tickets = new Map<string, Ticket>();
  const listening = Promise.withResolvers<Deno.NetAddr>();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: host,
      port,
      onListen: (address) => listening.resolve(address),
      onError: (error) => {
        logger.error(`http: ${describeError(error)}`);
        return textResponse(500, "internal error");
      },
    }, (request) => respond(request, tickets, options.media, logger));
  } catch (error) {
    throw new Error(
      `cannot serve HTTP on ${host}:${port} (IceFlix.Streaming.Http.Host/Port): ${describeError(error)}`,
    );
  }
  const address = await listening.promise;
  // Listening on every interface (0.0.0.0 or ::, as on IceGrid), a URL names the address the caller reached this
  // service at: the one address of this host that the caller's network is known to reach.
  const everyInterface = address.hostname === "0.0.0.0" || address.hostname === "::";
  const origin = (connection: Ice.Connection | null) => {
    const hostname = everyInterface ? connectionAddresses(connection).local : address.hostname;
    return `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${address.port}`;
  };
  logger.info(`videos served over HTTP at ${everyInterface ? "every address, port " + address.port : origin(null)}`);
  adapter.addFacet(new HttpStreaming(options, tickets, origin), identity, HTTP_STREAMING_FACET);
  return async () => {
    await server.shutdown();
  };
}

/** The facet servant: opens playbacks and hands out their URLs. */
class HttpStreaming extends IceFlixWeb.HttpStreaming {
  readonly #options: HttpStreamingOptions;
  readonly #tickets: Map<string, Ticket>;
  readonly #origin: (connection: Ice.Connection | null) => string;

  constructor(
    options: HttpStreamingOptions,
    tickets: Map<string, Ticket>,
    origin: (connection: Ice.Connection | null) => string,
  ) {
    super();
    this.#options = options;
    this.#tickets = tickets;
    this.#origin = origin;
  }

  async getHttpStream(mediaId: string, authentication: string, current: Ice.Current): Promise<IceFlixWeb.HttpStream> {
    const { adapter, media, getStream } = this.#options;
    const controller = (await getStream(mediaId, authentication))!;
    const found = media(mediaId);
    if (!found) {
      await controller.stop(); // the file went away (a rescan) while the controller opened
      throw new IceFlix.WrongMediaId(mediaId);
    }
    // The URL lives as long as the controller's servant: removed when it closes, whatever the reason.
    const controllerIdentity = controller.ice_getIdentity();
    const isOpen = () => adapter.find(controllerIdentity) !== null;
    // Found once: every chunk served counts as activity of this controller (touch does nothing once it closed).
    const servant = adapter.find(controllerIdentity);
    const touch = servant instanceof StreamController ? () => servant.touch() : () => {};
    // 122 random bits from the platform CSPRNG.
    const ticket = crypto.randomUUID().replaceAll("-", "");
    this.#tickets.set(ticket, { mediaId, isOpen, touch });
    // Closed tickets are forgotten; the check is cheap and the table stays as small as the open streams.
    for (const [key, { isOpen }] of this.#tickets) if (!isOpen()) this.#tickets.delete(key);
    const url = `${this.#origin(current.con)}/media/${mediaId}?ticket=${ticket}`;
    return new IceFlixWeb.HttpStream(controller, url, browserMediaType(found.format));
  }
}

/** Answers one HTTP request; a refusal is a short text that says why, never an exception. */
async function respond(
  request: Request,
  tickets: Map<string, Ticket>,
  media: (id: string) => StreamMedia | undefined,
  logger: Logger,
): Promise<Response> {
  const url = new URL(request.url);
  try {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return textResponse(405, `method ${request.method} not allowed: GET or HEAD`, { Allow: "GET, HEAD" });
    }
    const path = /^\/media\/([0-9a-f]{64})$/.exec(url.pathname);
    if (!path) throw new HttpError(404, "not found: stream URLs are /media/<id>?ticket=<ticket>");
    const found = media(path[1]);
    if (!found) throw new HttpError(404, `no title with id ${path[1]} here`);
    const ticketText = url.searchParams.get("ticket");
    if (!ticketText) {
      throw new HttpError(401, "no ticket: the StreamProvider's HttpStreaming facet (getHttpStream) gives this URL");
    }
    const ticket = tickets.get(ticketText);
    if (!ticket || ticket.mediaId !== found.id || !ticket.isOpen()) {
      throw new HttpError(
        403,
        "this ticket is not valid (any more): its stream was stopped, or its token was revoked and not renewed " +
          "within the grace period",
      );
    }
    ticket.touch();
    return await fileResponse(request, found, ticket);
  } catch (error) {
    if (!(error instanceof HttpError)) throw error;
    logger.debug(`http: ${error.status} for ${request.method} ${url.pathname}: ${error.message}`);
    const headers: Record<string, string> = error.size === undefined
      ? {}
      : { "Content-Range": `bytes */${error.size}` };
    if (error.status === 401) headers["WWW-Authenticate"] = 'IceFlix-ticket realm="IceFlix"';
    return textResponse(error.status, error.message, headers);
  }
}

/** The file, or the requested range of it, read in chunks while the ticket's playback stays open. */
async function fileResponse(request: Request, media: StreamMedia, ticket: Ticket): Promise<Response> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(media.path);
  } catch (error) {
    throw new HttpError(404, `the file of this title cannot be read now: ${describeError(error)}`);
  }
  let size: number;
  let range: ByteRange | undefined;
  try {
    size = (await file.stat()).size;
    range = parseRange(request.headers.get("Range"), size);
  } catch (error) {
    file.close();
    throw error;
  }
  const { start, end } = range ?? { start: 0, end: size - 1 };
  const headers: Record<string, string> = {
    "Content-Type": CONTAINER_TYPES[media.format.container] ?? "application/octet-stream",
    "Content-Length": String(end - start + 1),
    "Accept-Ranges": "bytes",
    // The URL is valid only while its playback is: nothing may keep a copy to serve later.
    "Cache-Control": "no-store",
  };
  if (range) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
  const status = range ? 206 : 200;
  if (request.method === "HEAD" || end < start) {
    file.close();
    return new Response(null, { status, headers });
  }
  await file.seek(start, Deno.SeekMode.Start);
  let remaining = end - start + 1;
  let open = true;
  const release = () => {
    if (open) file.close();
    open = false;
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        // Checked before every chunk: a playback that closes cuts its transfers within one chunk.
        if (!ticket.isOpen()) throw new Error("the playback was closed");
        ticket.touch();
        const buffer = new Uint8Array(Math.min(CHUNK, remaining));
        const count = await file.read(buffer);
        if (!count) throw new Error("the file got shorter while it was served");
        controller.enqueue(buffer.subarray(0, count));
        remaining -= count;
        if (remaining === 0) {
          release();
          controller.close();
        }
      } catch (error) {
        release();
        controller.error(error);
      }
    },
    cancel: release,
  });
  return new Response(body, { status, headers });
}

function textResponse(status: number, message: string, headers: Record<string, string> = {}): Response {
  return new Response(`${status} ${message}\n`, {
    status,
    headers: { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", ...headers },
  });
}
