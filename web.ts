/**
 * Serves the web client's page (web/) and tells it where the platform is:
 * `config.json` holds the Glacier2 router, Main and IceStorm proxies the page
 * uses (resolved with the locator when they are indirect, as on IceGrid).
 * Everything else the page does goes through Glacier2 (Ice over WebSocket)
 * and, for video, the streaming services' own HTTP servers.
 *
 *   ./run_service web [--Name=value ...]     (started by ./run_iceflix)
 *
 * Prints the page's URL as one line on stdout when ready; SIGINT or SIGTERM stops it.
 *
 * @module
 */
import { Ice } from "ice";
import { DEFAULT_TOPIC_MANAGER, TOPICS } from "./events.ts";
import {
  createLogger,
  describeError,
  initializeCommunicator,
  keepAliveOnStrayErrors,
  loadProperties,
  type Logger,
  secondsProperty,
} from "./service.ts";

const ROOT = new URL(".", import.meta.url).pathname;

/** The only files served: path -> file and type. The page's code is web/app.js, bundled by ./setup. */
const FILES: Record<string, [string, string]> = {
  "/": ["web/index.html", "text/html; charset=utf-8"],
  "/style.css": ["web/style.css", "text/css; charset=utf-8"],
  "/app.js": ["web/app.js", "text/javascript; charset=utf-8"],
  "/ice.js": ["web/ice.js", "text/javascript; charset=utf-8"],
  "/ice/Ice.min.js": ["node_modules/ice/lib/Ice.min.js", "text/javascript; charset=utf-8"],
  "/ice/Glacier2.min.js": ["node_modules/ice/lib/Glacier2.min.js", "text/javascript; charset=utf-8"],
  "/ice/IceStorm.min.js": ["node_modules/ice/lib/IceStorm.min.js", "text/javascript; charset=utf-8"],
};

/**
 * The router proxy a browser that loaded the page from `pageHost` connects
 * to: `router` as configured, but endpoints without a host (`ws -p 10081`)
 * get the page's host, so that Glacier2 beside the page is reached at the
 * address the browser already reaches (IceGrid's descriptor uses this).
 */
export function routerProxyFor(router: string, pageHost: string): string {
  const host = pageHost.replace(/^\[(.*)\]$/, "$1");
  // Only an address or a DNS name goes into the proxy text: a Host header is the browser's to choose.
  if (!/^[A-Za-z0-9.:-]+$/.test(host)) return router;
  // The proxy's parts are separated by colons outside quotes (a quoted IPv6 host has colons of its own).
  return router.split(/:(?=(?:[^"]*"[^"]*")*[^"]*$)/).map((part, index) =>
    index === 0 || /(^|\s)-h\s/.test(part) ? part : `${part.trimEnd()} -h "${host}"`
  ).join(":");
}

/**
 * `text` as a direct proxy, for a page behind Glacier2: its address filter
 * refuses proxies without endpoints, so a well-known object (`Main` on IceGrid)
 * or an indirect proxy is resolved here with the locator, to the endpoints of
 * every live server behind it. A direct proxy, no locator, or a failure gives
 * `text` back as it is.
 */
export async function directProxy(communicator: Ice.Communicator, text: string, logger: Logger): Promise<string> {
  const locator = communicator.getDefaultLocator()?.ice_invocationTimeout(3000);
  try {
    const proxy = communicator.stringToProxy(text);
    if (!locator || proxy.ice_getEndpoints().length > 0) return text;
    let found: Ice.ObjectPrx | null = proxy.ice_getAdapterId() === ""
      ? await locator.findObjectById(proxy.ice_getIdentity())
      : proxy;
    if (found && found.ice_getEndpoints().length === 0) found = await locator.findAdapterById(found.ice_getAdapterId());
    if (!found || found.ice_getEndpoints().length === 0) throw new Error("the locator knows no live server of it");
    return proxy.ice_adapterId("").ice_endpoints(found.ice_getEndpoints()).toString();
  } catch (error) {
    logger.warn(`cannot resolve ${text} with the locator: ${describeError(error)}`);
    return text;
  }
}

if (import.meta.main) {
  const properties = loadProperties([...Deno.args]);
  const logger = createLogger("web", properties);
  keepAliveOnStrayErrors(logger);
  const host = properties.getPropertyWithDefault("IceFlix.Web.Host", "127.0.0.1");
  // Not 10080: browsers refuse that port (Fetch's "bad ports", ERR_UNSAFE_PORT).
  const port = properties.getPropertyAsIntWithDefault("IceFlix.Web.Port", 10082);
  const router = properties.getPropertyWithDefault(
    "IceFlix.Web.RouterProxy",
    "Glacier2/router:ws -h 127.0.0.1 -p 10081",
  );
  const main = properties.getPropertyWithDefault("IceFlix.Client.MainProxy", "Main:tcp -h 127.0.0.1 -p 10010");
  const topicManager = properties.getPropertyWithDefault("IceStorm.TopicManager.Proxy", DEFAULT_TOPIC_MANAGER);
  // Only to resolve indirect proxies with the locator (Ice.Default.Locator, as IceGrid gives its servers).
  const communicator = initializeCommunicator([...Deno.args]);
  const fixed = {
    revocationTopic: TOPICS.authenticationStatus,
    // The page takes answers as large as the services send (a search of a large catalog: config/common.config).
    messageSizeMax: properties.getPropertyWithDefault("Ice.MessageSizeMax", "1024"),
    // The page renews its IceStorm subscriptions as often as the services renew theirs.
    resubscribeInterval: secondsProperty(properties, "IceFlix.Discovery.AnnounceInterval", 5),
  };
  const config = async (request: Request) => {
    const [mainProxy, topicManagerProxy] = await Promise.all([
      directProxy(communicator, main, logger),
      directProxy(communicator, topicManager, logger),
    ]);
    return JSON.stringify({
      router: routerProxyFor(router, new URL(request.url).hostname),
      main: mainProxy,
      topicManager: topicManagerProxy,
      ...fixed,
    });
  };
  const listening = Promise.withResolvers<Deno.NetAddr>();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { hostname: host, port, onListen: (address) => listening.resolve(address) },
      async (request) => {
        const path = new URL(request.url).pathname;
        if (path === "/config.json") {
          return new Response(await config(request), { headers: { "Content-Type": "application/json" } });
        }
        const file = FILES[path];
        if (!file || (request.method !== "GET" && request.method !== "HEAD")) {
          return new Response("404 not found\n", { status: 404, headers: { "Content-Type": "text/plain" } });
        }
        try {
          const body = request.method === "HEAD" ? null : await Deno.readFile(`${ROOT}${file[0]}`);
          return new Response(body, { headers: { "Content-Type": file[1], "Cache-Control": "no-cache" } });
        } catch (error) {
          logger.error(`cannot read ${file[0]} (run ./setup): ${describeError(error)}`);
          return new Response("500 the page is not built (run ./setup)\n", { status: 500 });
        }
      },
    );
  } catch (error) {
    logger.error(`cannot start: cannot listen on ${host}:${port} (IceFlix.Web.Host/Port): ${describeError(error)}`);
    Deno.exit(1);
  }
  const address = await listening.promise;
  const url = `http://${address.hostname}:${address.port}/`;
  console.log(url);
  logger.info(`the web client is at ${url}`);
  const stop = async () => {
    await server.shutdown();
    await communicator.destroy();
    Deno.exit(0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, stop);
}
