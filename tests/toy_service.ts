/**
 * A toy Authenticator for the foundation tests: it takes part in discovery
 * like a real service, accepts user "toy" with password hash "hash", and
 * refuses everyone else with `Unauthorized`.
 *
 *   deno run --allow-all tests/toy_service.ts --ToyAdapter.Endpoints="tcp -h 127.0.0.1" [--Name=value ...]
 *
 * @module
 */
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { Discovery } from "../discovery.ts";
import { runService } from "../service.ts";

class ToyAuthenticator extends IceFlix.Authenticator {
  refreshAuthorization(user: string, passwordHash: string): string {
    if (user !== "toy" || passwordHash !== "hash") throw new IceFlix.Unauthorized();
    return "toy-token";
  }

  isAuthorized(authentication: string): boolean {
    return authentication === "toy-token";
  }
}

await runService({
  name: "toy",
  adapterName: "ToyAdapter",
  async setup(context) {
    const proxy = context.adapter.addWithUUID(new ToyAuthenticator());
    const discovery = new Discovery(context, { kind: "auth", proxy });
    await discovery.start();
    context.onShutdown(() => discovery.stop());
    return proxy;
  },
});
