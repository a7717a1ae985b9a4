/**
 * The acceptor and IceGrid's locator: an adapter with an AdapterId (and a
 * ReplicaGroupId) registers its endpoints with a real icegridregistry at
 * activation and withdraws them at deactivation, as a C++ server would.
 */
import assert from "node:assert/strict";
import { Ice } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { createObjectAdapter } from "../acceptor.ts";
import { initializeCommunicator } from "../service.ts";
import { Child, freePort, waitForPort } from "../harness.ts";

/** An icegridregistry of the test's own on a free loopback port, with a fresh database. */
class Registry {
  private constructor(readonly port: number, readonly dataDir: string, readonly child: Child) {}

  static async start(options: { dynamicRegistration: boolean }): Promise<Registry> {
    const port = await freePort();
    const dataDir = await Deno.makeTempDir({ prefix: "iceflix-registry-" });
    const child = new Child("icegridregistry", [
      "--IceGrid.InstanceName=IceGrid",
      `--IceGrid.Registry.Client.Endpoints=tcp -h 127.0.0.1 -p ${port}`,
      "--IceGrid.Registry.Server.Endpoints=tcp -h 127.0.0.1",
      "--IceGrid.Registry.Internal.Endpoints=tcp -h 127.0.0.1",
      `--IceGrid.Registry.LMDB.Path=${dataDir}`,
      `--IceGrid.Registry.DynamicRegistration=${options.dynamicRegistration ? 1 : 0}`,
      // No multicast: registries of other test runs on this machine must not find this one.
      "--IceGrid.Registry.Discovery.Enabled=0",
    ]);
    await waitForPort(port);
    return new Registry(port, dataDir, child);
  }

  get locatorOption(): string {
    return `--Ice.Default.Locator=IceGrid/Locator:tcp -h 127.0.0.1 -p ${this.port}`;
  }

  async stop(): Promise<void> {
    await this.child.stop();
    await Deno.remove(this.dataDir, { recursive: true });
  }
}

/** An Authenticator whose answer says which server it is. */
class NamedEcho extends IceFlix.Authenticator {
  constructor(readonly serverName: string) {
    super();
  }
  refreshAuthorization(): string {
    return this.serverName;
  }
  isAuthorized(): boolean {
    return true;
  }
}

/** A server with one adapter `Echo` (servant `echo`) configured with `properties`, activated. */
async function startEchoServer(serverName: string, properties: string[]): Promise<Ice.Communicator> {
  const communicator = initializeCommunicator(["--Echo.Endpoints=tcp -h 127.0.0.1", ...properties]);
  try {
    const adapter = await createObjectAdapter(communicator, "Echo");
    adapter.add(new NamedEcho(serverName), Ice.stringToIdentity("echo"));
    await adapter.activate();
    return communicator;
  } catch (error) {
    await communicator.destroy();
    throw error;
  }
}

Deno.test("locator: adapters register their endpoints with IceGrid at activation and withdraw them at shutdown", async () => {
  const registry = await Registry.start({ dynamicRegistration: true });
  // The client asks the locator every time, so each call sees the registry as it is now.
  const client = initializeCommunicator([registry.locatorOption, "--Ice.Default.LocatorCacheTimeout=0"]);
  const servers: Ice.Communicator[] = [];
  const echo = (proxy: string) => IceFlix.AuthenticatorPrx.uncheckedCast(client.stringToProxy(proxy));
  try {
    servers.push(await startEchoServer("one", [registry.locatorOption, "--Echo.AdapterId=echo-1"]));
    servers.push(
      await startEchoServer("two", [registry.locatorOption, "--Echo.AdapterId=echo-2", "--Echo.ReplicaGroupId=echoes"]),
    );
    servers.push(
      await startEchoServer("three", [
        registry.locatorOption,
        "--Echo.AdapterId=echo-3",
        "--Echo.ReplicaGroupId=echoes",
      ]),
    );
    assert.equal(await echo("echo@echo-1").refreshAuthorization("", ""), "one");
    assert.equal(await echo("echo@echo-2").refreshAuthorization("", ""), "two");
    const group = await client.getDefaultLocator().findAdapterById("echoes");
    assert.equal(group!.ice_getEndpoints().length, 2, `the replica group has both members: ${group}`);

    // Shutdown withdraws: the id is unknown again, and the group keeps only the live member.
    await servers[1].destroy();
    await assert.rejects(client.getDefaultLocator().findAdapterById("echo-2"), Ice.AdapterNotFoundException);
    for (let call = 0; call < 5; call++) {
      assert.equal(await echo("echo@echoes").refreshAuthorization("", ""), "three");
    }
    // Without AdapterId the adapter leaves the registry alone.
    servers.push(await startEchoServer("plain", [registry.locatorOption]));
    await assert.rejects(client.getDefaultLocator().findAdapterById("Echo"), Ice.AdapterNotFoundException);
  } finally {
    for (const server of servers) await server.destroy();
    await client.destroy();
    await registry.stop();
  }
});

Deno.test("locator: a registration the registry refuses, or an unreachable registry, fails the activation clearly", async () => {
  const registry = await Registry.start({ dynamicRegistration: false });
  try {
    await assert.rejects(
      startEchoServer("refused", [registry.locatorOption, "--Echo.AdapterId=not-deployed"]),
      /cannot register adapter Echo \(id not-deployed\) with the locator registry: the registry does not know this adapter id/,
    );
  } finally {
    await registry.stop();
  }
  await assert.rejects(
    startEchoServer("alone", [registry.locatorOption, "--Echo.AdapterId=echo-1"]),
    /cannot register adapter Echo \(id echo-1\) with the locator registry: ::Ice::ConnectionRefusedException/,
  );
});
