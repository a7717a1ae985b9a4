/**
 * Main (spec 1.5, 2.1): the clients' entry point. It hands out a live
 * Authenticator and a live MediaCatalog, from the services announced on topic
 * `ServiceAvailability`; it announces nothing itself.
 *
 * Clients find it without being told: `Main:tcp -h 127.0.0.1 -p 10010`
 * (`MainAdapter.Endpoints`); more Mains may run on other endpoints.
 *
 *   ./run_service main [--Name=value ...]
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="./slice/iceflix.d.ts"
import { IceFlix } from "./slice/iceflix.js";
import { Discovery, type ServiceKind, type ServiceKinds } from "./discovery.ts";
import { runService } from "./service.ts";

/** The servant: the two operations of `IceFlix.Main`. */
class Main extends IceFlix.Main {
  readonly #discovery: Discovery;

  constructor(discovery: Discovery) {
    super();
    this.#discovery = discovery;
  }

  getAuthenticator(): Promise<IceFlix.AuthenticatorPrx> {
    return this.#liveService("auth");
  }

  getCatalogService(): Promise<IceFlix.MediaCatalogPrx> {
    return this.#liveService("catalog");
  }

  /**
   * The next service of `kind`, round-robin, that answers a ping (bounded by
   * discovery's call timeout): one that does not is forgotten and the next is
   * tried, so a client never gets a dead proxy from a stale list.
   *
   * @throws IceFlix.TemporaryUnavailable when none answers
   */
  #liveService<K extends ServiceKind>(kind: K): Promise<ServiceKinds[K]> {
    return this.#discovery.callAny(kind, async (service) => {
      await service.ice_ping();
      return service;
    });
  }
}

await runService({
  name: "main",
  adapterName: "MainAdapter",
  async setup(context) {
    const { adapter, onShutdown } = context;
    // Main listens to the announcements of the others but is not announced: clients reach it at its fixed endpoint.
    const discovery = new Discovery(context);
    await discovery.start();
    onShutdown(() => discovery.stop());
    // A well-known identity, so that "Main:<endpoint>" is all a client needs.
    return adapter.add(new Main(discovery), Ice.stringToIdentity("Main"));
  },
});
