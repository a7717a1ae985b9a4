/**
 * The Authenticator (a real `./run_service auth` process with a real
 * IceStorm): refreshAuthorization + isAuthorized pairs per second with 1 and
 * 8 concurrent callers, then how late tokens expire with 100,000 live tokens.
 *
 * Expiry lateness is measured end to end, where the other services see it:
 * the moment a subscriber of topic AuthenticationStatus receives
 * `revoke(token)`, minus (the moment the bench sent the refreshAuthorization
 * that got the token + the lifetime). The token was issued after it was
 * asked for, so the figure is an upper bound of the service's own lateness,
 * IceStorm's delivery included. It is measured at a oneway subscriber (the
 * service's lateness plus one IceStorm hop) and at a twoway one, as
 * EventChannel subscribes (plus IceStorm waiting for each reply).
 *
 * @module
 */
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { EventChannel, TOPICS } from "../events.ts";
import { createLogger } from "../service.ts";
import { sha256Hex } from "../users.ts";
import { eventually, IceStormServer, ROOT, startIceFlixService, testCommunicator } from "../harness.ts";
import { latencySummary } from "./stats.ts";

const SECONDS = 3;
const LIVE_TOKENS = 100_000;
/** Long enough for all LIVE_TOKENS to be issued before the first expires. */
const LIFETIME_SECONDS = 30;

/** token -> when the bench asked for it (performance.now(), ms), for the tokens whose expiry is measured. */
const askedAt = new Map<string, number>();

/** A revoke subscriber that notes, for each measured token, how late its revocation arrived (ms). */
class Revocations extends IceFlix.TokenRevocation {
  readonly lateness: number[] = [];
  revoke(token: string) {
    const asked = askedAt.get(token);
    if (asked !== undefined) this.lateness.push(performance.now() - asked - LIFETIME_SECONDS * 1000);
  }
}

/** Calls refreshAuthorization + isAuthorized for SECONDS from 1, then 8 concurrent callers. */
async function throughput(authenticator: IceFlix.AuthenticatorPrx, passwordHash: string): Promise<void> {
  for (const callers of [1, 8]) {
    let pairs = 0;
    const end = performance.now() + SECONDS * 1000;
    await Promise.all(Array.from({ length: callers }, async () => {
      while (performance.now() < end) {
        await authenticator.isAuthorized(await authenticator.refreshAuthorization("bench", passwordHash));
        pairs++;
      }
    }));
    const rate = pairs / SECONDS;
    console.log(
      `refreshAuthorization + isAuthorized, ${callers} caller(s): ${Math.round(rate)} pairs/s ` +
        `(${Math.round(2 * rate)} calls/s)`,
    );
  }
}

/** Issues LIVE_TOKENS tokens as fast as 8 callers can, noting when each was asked for. */
async function issueLiveTokens(authenticator: IceFlix.AuthenticatorPrx, passwordHash: string): Promise<void> {
  const start = performance.now();
  let asked = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (asked < LIVE_TOKENS) {
      asked++;
      const now = performance.now();
      askedAt.set(await authenticator.refreshAuthorization("bench", passwordHash), now);
    }
  }));
  const seconds = (performance.now() - start) / 1000;
  console.log(`issued ${LIVE_TOKENS} tokens in ${seconds.toFixed(1)} s (lifetime ${LIFETIME_SECONDS} s)`);
  if (seconds >= LIFETIME_SECONDS) console.log("WARNING: some tokens expired before the last was issued");
}

const icestorm = await IceStormServer.start();
await Deno.mkdir(`${ROOT}data`, { recursive: true });
const dir = await Deno.makeTempDir({ dir: `${ROOT}data`, prefix: "bench-auth-" });
await Deno.writeTextFile(`${dir}/users.json`, JSON.stringify({ bench: await sha256Hex("bench") }));
const { communicator, adapter } = await testCommunicator([icestorm.option]);
const auth = await startIceFlixService("auth", [
  "--AuthAdapter.Endpoints=tcp -h 127.0.0.1",
  icestorm.option,
  `--IceFlix.Auth.UsersFile=${dir}/users.json`,
  `--IceFlix.Auth.TokenLifetime=${LIFETIME_SECONDS}`,
  "--IceFlix.LogLevel=warn",
]);
try {
  // Two subscribers: a oneway one, which IceStorm feeds as fast as events come (the Authenticator's own lateness,
  // plus one IceStorm hop), and one subscribed as the IceFlix services subscribe (EventChannel: twoway).
  const subscribers = { "oneway": new Revocations(), "twoway": new Revocations() };
  const events = new EventChannel(communicator, createLogger("bench", communicator.getProperties()));
  await (await events.topic(TOPICS.authenticationStatus))
    .subscribeAndGetPublisher(new Map(), adapter.addWithUUID(subscribers.oneway).ice_oneway());
  await events.subscribe(TOPICS.authenticationStatus, adapter.addWithUUID(subscribers["twoway"]));

  const authenticator = IceFlix.AuthenticatorPrx.uncheckedCast(communicator.stringToProxy(auth.proxy));
  const passwordHash = await sha256Hex("bench");
  await throughput(authenticator, passwordHash);
  await issueLiveTokens(authenticator, passwordHash);
  for (const [name, { lateness }] of Object.entries(subscribers)) {
    await eventually(`every revoke event reaches the ${name} subscriber`, () => lateness.length === LIVE_TOKENS, 120);
    console.log(
      `expiry lateness at the ${name} revoke subscriber, ${LIVE_TOKENS} live tokens: ${
        latencySummary(lateness, { max: true, digits: 1 })
      }`,
    );
  }
} finally {
  await auth.child.stop();
  await communicator.destroy();
  await icestorm.stop();
  await Deno.remove(dir, { recursive: true });
}
