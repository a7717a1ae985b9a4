/**
 * Serves the web client's page (web/) and tells it where the platform is:
 * `config.json` holds the Glacier2 router, Main and IceStorm proxies the page
 * uses. Everything else the page does goes through Glacier2 (Ice over
 * WebSocket) and, for video, the streaming services' own HTTP servers.
 *
 *   ./run_service web [--Name=value ...]     (started by ./run_iceflix)
 *
 * Prints the page's URL as one line on stdout when ready; SIGINT or SIGTERM stops it.
 *
 * @module
 */
import { DEFAULT_TOPIC_MANAGER, TOPICS } from "./events.ts";
import { createLogger, describeError, keepAliveOnStrayErrors, loadProperties, secondsProperty } from "./service.ts";

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

if (import.meta.main) {
  const properties = loadProperties([...Deno.args]);
  const logger = createLogger("web", properties);
  keepAliveOnStrayErrors(logger);
  const host = properties.getPropertyWithDefault("IceFlix.Web.Host", "127.0.0.1");
  const port = properties.getPropertyAsIntWithDefault("IceFlix.Web.Port", 10080);
  const config = JSON.stringify({
    router: properties.getPropertyWithDefault("IceFlix.Web.RouterProxy", "Glacier2/router:ws -h 127.0.0.1 -p 10081"),
    main: properties.getPropertyWithDefault("IceFlix.Client.MainProxy", "Main:tcp -h 127.0.0.1 -p 10010"),
    topicManager: properties.getPropertyWithDefault("IceStorm.TopicManager.Proxy", DEFAULT_TOPIC_MANAGER),
    revocationTopic: TOPICS.authenticationStatus,
    // The page takes answers as large as the services send (a search of a large catalog: config/common.config).
    messageSizeMax: properties.getPropertyWithDefault("Ice.MessageSizeMax", "1024"),
    // The page renews its IceStorm subscriptions as often as the services renew theirs.
    resubscribeInterval: secondsProperty(properties, "IceFlix.Discovery.AnnounceInterval", 5),
  });
  const listening = Promise.withResolvers<Deno.NetAddr>();
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { hostname: host, port, onListen: (address) => listening.resolve(address) },
      async (request) => {
        const path = new URL(request.url).pathname;
        if (path === "/config.json") return new Response(config, { headers: { "Content-Type": "application/json" } });
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
    Deno.exit(0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, stop);
}
