/**
 * Twoway round trips per second against a TypeScript servant served by the
 * acceptor, from a TypeScript client and from a Python (IcePy) client, with
 * 1 and 8 concurrent callers.
 *
 * @module
 */
import { Ice } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { createObjectAdapter } from "../acceptor.ts";
import { initializeCommunicator } from "../service.ts";
import { PYTHON, ROOT } from "../harness.ts";

const SECONDS = 3;

class Answer extends IceFlix.Authenticator {
  refreshAuthorization(user: string): string {
    return user;
  }
  isAuthorized(): boolean {
    return true;
  }
}

const server = initializeCommunicator(["--Bench.Endpoints=tcp -h 127.0.0.1"]);
const adapter = await createObjectAdapter(server, "Bench");
const proxyText = server.proxyToString(adapter.add(new Answer(), Ice.stringToIdentity("bench")));
await adapter.activate();

const client = initializeCommunicator([]);
const proxy = IceFlix.AuthenticatorPrx.uncheckedCast(client.stringToProxy(proxyText));
await proxy.ice_ping();

for (const callers of [1, 8]) {
  let calls = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: callers }, async () => {
    while (performance.now() < end) {
      await proxy.isAuthorized("token");
      calls++;
    }
  }));
  console.log(`TS client -> TS servant, ${callers} caller(s): ${Math.round(calls / SECONDS)} calls/s`);
}

const python = await new Deno.Command(PYTHON, {
  args: [`${ROOT}bench/roundtrip_client.py`, proxyText, String(SECONDS)],
}).output();
console.log(new TextDecoder().decode(python.stdout).trimEnd());
if (!python.success) console.log(new TextDecoder().decode(python.stderr));

await client.destroy();
await server.destroy();
