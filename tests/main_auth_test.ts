/**
 * Main, the Authenticator and ./add_user, as real processes started by
 * ./run_service, with a real IceStorm of each test's own.
 */
import assert from "node:assert/strict";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
import { Discovery } from "../discovery.ts";
import { EventChannel, TOPICS } from "../events.ts";
import { createLogger, createServiceContext } from "../service.ts";
import { loadUsersFile, passwordMatches, sha256Hex } from "../users.ts";
import {
  Child,
  delay,
  eventually,
  IceStormServer,
  ROOT,
  runPython,
  scratchDir,
  startIceFlixService,
  testCommunicator,
  writeUsersFile,
} from "../harness.ts";

const INTERVAL = "--IceFlix.Discovery.AnnounceInterval=1";
const LIFETIME_SECONDS = 3;
/** A token of a user name of up to 32 bytes: 128 random bits, its expiry, the user sealed, a MAC (token_table.ts). */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{94}$/;

function startAuth(icestorm: IceStormServer, usersFile: string) {
  return startIceFlixService("auth", [
    "--AuthAdapter.Endpoints=tcp -h 127.0.0.1",
    icestorm.option,
    INTERVAL,
    `--IceFlix.Auth.UsersFile=${usersFile}`,
    `--IceFlix.Auth.TokenLifetime=${LIFETIME_SECONDS}`,
    "--IceFlix.LogLevel=debug",
  ]);
}

function startMain(icestorm: IceStormServer) {
  return startIceFlixService("main", ["--MainAdapter.Endpoints=tcp -h 127.0.0.1 -p 0", icestorm.option, INTERVAL]);
}

/** Runs ./add_user with these arguments (and `stdin` as its input); returns its exit code and output. */
async function addUser(args: string[], stdin = ""): Promise<{ code: number; stdout: string; stderr: string }> {
  const process = new Deno.Command(`${ROOT}add_user`, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const writer = process.stdin.getWriter();
  await writer.write(new TextEncoder().encode(stdin));
  await writer.close();
  const output = await process.output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/** The users file holds exactly these users, each password stored salted and slow, never as its SHA-256. */
async function assertPasswords(usersFile: string, passwords: Record<string, string>): Promise<void> {
  const text = await Deno.readTextFile(usersFile);
  const stored: Record<string, string> = JSON.parse(text);
  assert.deepEqual(Object.keys(stored).sort(), Object.keys(passwords).sort());
  for (const [user, password] of Object.entries(passwords)) {
    assert.match(stored[user], /^pbkdf2-sha256\$\d+\$/, `${user}'s password is stored hashed`);
    assert.ok(!text.includes(await sha256Hex(password)), "no SHA-256 a client could send is in the file");
    assert.ok(await passwordMatches(stored[user], await sha256Hex(password)), `${user}'s password verifies`);
  }
}

/** Whether `promise` resolves (rather than rejects). */
async function succeeds(promise: PromiseLike<unknown>): Promise<boolean> {
  try {
    await promise;
    return true;
  } catch {
    return false;
  }
}

/** A MediaCatalog in the test process that announces itself like a catalog service. */
class EmptyCatalog extends IceFlix.MediaCatalog {
  getTile(id: string): IceFlix.Media {
    throw new IceFlix.WrongMediaId(id);
  }
  getTilesByName(): string[] {
    return [];
  }
  getTilesByTags(): string[] {
    return [];
  }
  renameTile(): void {
    throw new IceFlix.Unauthorized();
  }
  addTags(): void {
    throw new IceFlix.Unauthorized();
  }
  removeTags(): void {
    throw new IceFlix.Unauthorized();
  }
}

Deno.test("main: hands out live auth and catalog services, round-robin; none or dead -> TemporaryUnavailable", async () => {
  const icestorm = await IceStormServer.start();
  const dir = await scratchDir("test-auth-");
  const usersFile = await writeUsersFile(dir, { alice: "alice's secret" });
  const { communicator, adapter } = await testCommunicator([icestorm.option, INTERVAL]);
  const main = await startMain(icestorm);
  const auths: Child[] = [];
  try {
    const mainPrx = IceFlix.MainPrx.uncheckedCast(communicator.stringToProxy(main.proxy));
    await assert.rejects(mainPrx.getAuthenticator(), IceFlix.TemporaryUnavailable);
    await assert.rejects(mainPrx.getCatalogService(), IceFlix.TemporaryUnavailable);

    const auth = await startAuth(icestorm, usersFile);
    auths.push(auth.child);
    const catalogPrx = adapter.addWithUUID(new EmptyCatalog());
    const catalog = new Discovery(
      await createServiceContext(adapter, createLogger("catalog", communicator.getProperties())),
      {
        kind: "catalog",
        proxy: catalogPrx,
      },
    );
    await catalog.start();
    await eventually("main knows the auth", () => succeeds(mainPrx.getAuthenticator()));
    await eventually("main knows the catalog", () => succeeds(mainPrx.getCatalogService()));

    const authenticator = await mainPrx.getAuthenticator();
    assert.equal(communicator.proxyToString(authenticator), auth.proxy);
    assert.ok(await authenticator.ice_isA(IceFlix.Authenticator.ice_staticId()));
    assert.match(
      await authenticator.refreshAuthorization("alice", await sha256Hex("alice's secret")),
      TOKEN_SHAPE,
    );
    const catalogGiven = await mainPrx.getCatalogService();
    assert.ok(catalogGiven.equals(catalogPrx));
    assert.ok(await catalogGiven.ice_isA(IceFlix.MediaCatalog.ice_staticId()));
    assert.deepEqual(await catalogGiven.getTilesByName("x", false), []);

    // A SIGKILLed auth is never handed out again: Main pings a candidate before handing it out, so the very first
    // request after the kill already finds no other and raises TemporaryUnavailable.
    await auth.child.stop("SIGKILL");
    await assert.rejects(mainPrx.getAuthenticator(), IceFlix.TemporaryUnavailable);
    await catalog.stop();

    // Two auths: both are handed out, in turn.
    const [first, second] = await Promise.all([startAuth(icestorm, usersFile), startAuth(icestorm, usersFile)]);
    auths.push(first.child, second.child);
    const handedOut = async () => {
      const proxies = [];
      for (let call = 0; call < 4; call++) proxies.push(communicator.proxyToString(await mainPrx.getAuthenticator()));
      return proxies;
    };
    // Until Main has learnt one of them, it has none to hand out (TemporaryUnavailable).
    await eventually("main hands out both auths", async () => new Set(await handedOut().catch(() => [])).size === 2);
    const proxies = await handedOut();
    assert.deepEqual(new Set(proxies), new Set([first.proxy, second.proxy]));
    assert.notEqual(proxies[0], proxies[1], "round-robin");
  } finally {
    await Promise.all([main.child.stop(), ...auths.map((child) => child.stop())]);
    await communicator.destroy();
    await icestorm.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth: credentials, several tokens per user, expiry, a revoke event per expired token", async () => {
  const icestorm = await IceStormServer.start();
  const dir = await scratchDir("test-auth-");
  const usersFile = await writeUsersFile(dir, { alice: "alice's secret", bob: "bob's secret" });
  const { communicator, adapter } = await testCommunicator([icestorm.option]);
  const revoked: string[] = [];
  class Revocations extends IceFlix.TokenRevocation {
    revoke(token: string) {
      revoked.push(token);
    }
  }
  const events = new EventChannel(communicator, createLogger("test", communicator.getProperties()));
  await events.subscribe(TOPICS.authenticationStatus, adapter.addWithUUID(new Revocations()));
  const auth = await startAuth(icestorm, usersFile);
  try {
    const authenticator = IceFlix.AuthenticatorPrx.uncheckedCast(communicator.stringToProxy(auth.proxy));
    const tokens = [
      await authenticator.refreshAuthorization("alice", await sha256Hex("alice's secret")),
      await authenticator.refreshAuthorization("alice", await sha256Hex("alice's secret")),
      // Hexadecimal is hexadecimal, whatever its case.
      await authenticator.refreshAuthorization("bob", (await sha256Hex("bob's secret")).toUpperCase()),
    ];
    assert.equal(new Set(tokens).size, 3, "every token is new");
    for (const token of tokens) assert.match(token, TOKEN_SHAPE, "128 random bits, expiry, sealed user, MAC");
    for (const [user, password] of [["alice", "bob's secret"], ["carol", "anything"], ["", ""], ["alice", "x"]]) {
      await assert.rejects(authenticator.refreshAuthorization(user, await sha256Hex(password)), IceFlix.Unauthorized);
    }
    await assert.rejects(authenticator.refreshAuthorization("alice", "not a hash"), IceFlix.Unauthorized);

    for (const token of tokens) assert.equal(await authenticator.isAuthorized(token), true);
    assert.equal(await authenticator.isAuthorized("0".repeat(32)), false);
    assert.equal(await authenticator.isAuthorized(""), false);

    await eventually("every token is revoked through IceStorm", () => revoked.length >= 3, 3 * LIFETIME_SECONDS);
    assert.deepEqual([...revoked].sort(), [...tokens].sort(), "one revoke event per token");
    for (const token of tokens) assert.equal(await authenticator.isAuthorized(token), false);
    // A token is valid again for nobody; the user just asks for a new one.
    assert.equal(
      await authenticator.isAuthorized(
        await authenticator.refreshAuthorization("bob", await sha256Hex("bob's secret")),
      ),
      true,
    );

    await eventually("the log tells of alice's tokens", () => auth.child.stderr.includes("new token for alice"));
    for (const token of tokens) assert.ok(!auth.child.stderr.includes(token), "tokens are never logged");
  } finally {
    await auth.child.stop();
    await communicator.destroy();
    await icestorm.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("add_user: running auths reload without restart (SIGUSR2 via the pid file); bad input changes nothing", async () => {
  const icestorm = await IceStormServer.start();
  const dir = await scratchDir("test-auth-");
  const usersFile = `${dir}/users.json`; // Missing at first.
  const pidFile = `${dir}/auth.pid`;
  const { communicator } = await testCommunicator();
  const auth = await startAuth(icestorm, usersFile);
  // A stale pid file may name an unrelated process: it must survive, SIGUSR2 would kill it.
  const bystander = new Deno.Command("sleep", { args: ["60"] }).spawn();
  try {
    // The log line is on stderr, the ready line on stdout: either may come first.
    await eventually(
      "auth says nobody can log in",
      () => /users file .*users\.json created empty \(mode 0600\): nobody can log in/.test(auth.child.stderr),
    );
    assert.deepEqual(JSON.parse(await Deno.readTextFile(usersFile)), {});
    assert.equal((await Deno.stat(usersFile)).mode! & 0o777, 0o600);
    const authenticator = IceFlix.AuthenticatorPrx.uncheckedCast(communicator.stringToProxy(auth.proxy));
    const logIn = async (user: string, password: string) =>
      authenticator.refreshAuthorization(user, await sha256Hex(password));
    await assert.rejects(logIn("carol", "carol's secret"), IceFlix.Unauthorized);

    await Deno.writeTextFile(pidFile, `${auth.child.process.pid}\n${bystander.pid}\n`);
    let run = await addUser([`--users-file=${usersFile}`, `--pid-file=${pidFile}`, "carol", "carol's secret"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /warning: a password on the command line is visible to other users/);
    assert.match(run.stdout, /user carol added to .*users\.json\n1 running Authenticator\(s\) told to reload/);
    await eventually("carol can log in", () => succeeds(logIn("carol", "carol's secret")));

    // The password typed on standard input (no echo on a terminal) replaces the old one.
    run = await addUser([`--users-file=${usersFile}`, `--pid-file=${pidFile}`, "carol"], "new secret\n");
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /user carol: password changed/);
    await eventually("the new password works", () => succeeds(logIn("carol", "new secret")));
    await assert.rejects(logIn("carol", "carol's secret"), IceFlix.Unauthorized);
    await assertPasswords(usersFile, { carol: "new secret" });

    // Refused: a bad user name, an empty password, a corrupt users file; the file stays as it was, byte for byte.
    const before = await Deno.readFile(usersFile);
    run = await addUser([`--users-file=${usersFile}`, `--pid-file=${pidFile}`, "dave smith", "x"]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /invalid user name "dave smith": 1 to 64 characters: letters, digits/);
    run = await addUser([`--users-file=${usersFile}`, `--pid-file=${pidFile}`, "dave"], "\n");
    assert.equal(run.code, 1);
    assert.match(run.stderr, /password must not be empty/);
    assert.deepEqual(await Deno.readFile(usersFile), before);
    const corrupt = new TextEncoder().encode('{"carol": "0123');
    await Deno.writeFile(usersFile, corrupt);
    run = await addUser([`--users-file=${usersFile}`, `--pid-file=${pidFile}`, "dave", "x"]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /users\.json is not valid JSON .* left untouched/);
    assert.deepEqual(await Deno.readFile(usersFile), corrupt);

    // A corrupt file at reload: the auth keeps the users it had.
    Deno.kill(auth.child.process.pid, "SIGUSR2");
    await eventually(
      "auth logs the failed reload",
      () => /cannot reload: .*users\.json is not valid JSON.*keeping the 1 user\(s\) loaded/.test(auth.child.stderr),
    );
    assert.ok(await logIn("carol", "new secret"));
    assert.deepEqual(await Deno.readFile(usersFile), corrupt);

    bystander.kill("SIGTERM");
    assert.equal((await bystander.status).signal, "SIGTERM", "the bystander got no SIGUSR2");
  } finally {
    try {
      bystander.kill("SIGKILL");
    } catch {
      // Ended already.
    }
    await bystander.status;
    await auth.child.stop();
    await communicator.destroy();
    await icestorm.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("add_user works while nothing runs; auth refuses a corrupt users file at start and leaves it untouched", async () => {
  const dir = await scratchDir("test-auth-");
  try {
    const usersFile = `${dir}/users.json`;
    const run = await addUser([`--users-file=${usersFile}`, `--pid-file=${dir}/none.pid`, "erin", "erin's secret"]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /no running Authenticator listed in .*none\.pid/);
    await assertPasswords(usersFile, { erin: "erin's secret" });

    for (
      const [content, error] of [["{ not json", /is not valid JSON/], [
        '{"erin": "short"}',
        /user erin: expected a stored password/,
      ]]
    ) {
      await Deno.writeTextFile(usersFile, content as string);
      const auth = new Child(`${ROOT}run_service`, ["auth", `--IceFlix.Auth.UsersFile=${usersFile}`]);
      const status = await auth.wait();
      assert.notEqual(status.code, 0);
      assert.match(auth.stderr, /cannot start: .*users\.json/);
      assert.match(auth.stderr, error as RegExp);
      assert.equal(await Deno.readTextFile(usersFile), content, "left untouched");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("add_user: runs at the same moment keep every change; the users file is private to its owner", async () => {
  const dir = await scratchDir("test-auth-");
  try {
    const usersFile = await writeUsersFile(dir, { demo: "demo" });
    await Deno.chmod(usersFile, 0o644);
    const names = ["u1", "u2", "u3", "u4", "u5", "u6"];
    // Each run reads the file before it reads its password from stdin; all have read it by the time the passwords
    // are given, so without a lock every run would write back the file it read plus its own user, and all but one
    // user would be lost.
    const runs = names.map((name) =>
      new Deno.Command(`${ROOT}add_user`, {
        args: [`--users-file=${usersFile}`, `--pid-file=${dir}/none.pid`, name],
        stdin: "piped",
        stdout: "null",
        stderr: "piped",
      }).spawn()
    );
    await delay(1000);
    await Promise.all(runs.map(async (run, i) => {
      const writer = run.stdin.getWriter();
      await writer.write(new TextEncoder().encode(`${names[i]}'s secret\n`));
      await writer.close();
    }));
    for (const output of await Promise.all(runs.map((run) => run.output()))) {
      assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    }
    await assertPasswords(
      usersFile,
      Object.fromEntries([["demo", "demo"], ...names.map((name) => [name, `${name}'s secret`])]),
    );
    assert.equal((await Deno.stat(usersFile)).mode! & 0o777, 0o600, "only its owner may read the password hashes");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("users file: SHA-256 entries converted on load, atomically; the file's content logs nobody in", async () => {
  const icestorm = await IceStormServer.start();
  const dir = await scratchDir("test-auth-");
  const usersFile = `${dir}/users.json`;
  // The spec's form: what a client sends as the password, so a copy of the file would log anyone in.
  await Deno.writeTextFile(usersFile, JSON.stringify({ demo: await sha256Hex("demo") }), { mode: 0o644 });
  const { communicator } = await testCommunicator();
  const auth = await startAuth(icestorm, usersFile);
  try {
    await eventually(
      "auth converts the file",
      () => /1 password\(s\) stored as SHA-256 converted/.test(auth.child.stderr),
    );
    await assertPasswords(usersFile, { demo: "demo" });
    assert.equal((await Deno.stat(usersFile)).mode! & 0o777, 0o600);
    const stored: string = JSON.parse(await Deno.readTextFile(usersFile)).demo;
    assert.deepEqual(
      (await loadUsersFile(usersFile)).users,
      new Map([["demo", stored]]),
      "loaded again, nothing changes",
    );
    const authenticator = IceFlix.AuthenticatorPrx.uncheckedCast(communicator.stringToProxy(auth.proxy));
    assert.match(await authenticator.refreshAuthorization("demo", await sha256Hex("demo")), /\S{16,}/);
    await assert.rejects(authenticator.refreshAuthorization("demo", stored), IceFlix.Unauthorized);
    await assert.rejects(authenticator.refreshAuthorization("demo", await sha256Hex(stored)), IceFlix.Unauthorized);
  } finally {
    await auth.child.stop();
    await communicator.destroy();
    await icestorm.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth: wrong guesses are slowed down and logged once per burst; the right password still logs in", async () => {
  const icestorm = await IceStormServer.start();
  const dir = await scratchDir("test-auth-");
  const { communicator } = await testCommunicator();
  const auth = await startAuth(icestorm, await writeUsersFile(dir, { carol: "carol's secret" }));
  try {
    const authenticator = IceFlix.AuthenticatorPrx.uncheckedCast(communicator.stringToProxy(auth.proxy));
    const guesses = 6; // The waits double from the fourth: about 2 s in all.
    for (let guess = 0; guess < guesses; guess++) {
      await assert.rejects(
        authenticator.refreshAuthorization("carol", await sha256Hex(`guess ${guess}`)),
        IceFlix.Unauthorized,
      );
    }
    assert.match(await authenticator.refreshAuthorization("carol", await sha256Hex("carol's secret")), /\S{16,}/);
    await eventually("the slow-down is logged", () => /user "carol": 3 failed logins in a row/.test(auth.child.stderr));
    const count = (pattern: RegExp) => auth.child.stderr.split("\n").filter((line) => pattern.test(line)).length;
    assert.equal(count(/refused the credentials of user "carol"/), 1, "one refusal line per burst");
    assert.equal(count(/user "carol": 3 failed logins in a row/), 1, "one slow-down line per burst");
    assert.equal(count(/host 127\.0\.0\.1: 3 failed logins in a row/), 1, "the host is slowed down too");
  } finally {
    await auth.child.stop();
    await communicator.destroy();
    await icestorm.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("interop: a Python client logs in through Main and the Authenticator", async () => {
  const icestorm = await IceStormServer.start();
  const dir = await scratchDir("test-auth-");
  const usersFile = await writeUsersFile(dir, { frank: "frank's secret" });
  const { communicator } = await testCommunicator();
  const main = await startMain(icestorm);
  const auth = await startAuth(icestorm, usersFile);
  try {
    const mainPrx = IceFlix.MainPrx.uncheckedCast(communicator.stringToProxy(main.proxy));
    await eventually("main knows the auth", () => succeeds(mainPrx.getAuthenticator()));
    assert.equal(
      await runPython("main_auth_client.py", [main.proxy, "frank", "frank's secret"]),
      [
        "catalog: TemporaryUnavailable",
        `authenticator: ${auth.proxy}`,
        "token: 94 base64url characters",
        "isAuthorized(token): True",
        "isAuthorized(other): False",
        "wrong password: Unauthorized",
        "",
      ].join("\n"),
    );
  } finally {
    await Promise.all([main.child.stop(), auth.child.stop()]);
    await communicator.destroy();
    await icestorm.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
