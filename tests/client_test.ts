/**
 * End to end: ./run_iceflix brings the whole platform up (its own IceStorm,
 * Main and free ports, short token lifetime and grace period), and the client
 * (./run_client) is driven as a user would drive it: in script mode, and on a
 * pseudo-terminal for the hidden password. Real IceStorm, real services, real
 * GStreamer on both ends.
 */
import assert from "node:assert/strict";
import { sha256Hex } from "../users.ts";
import { Child, freePort, IceStormServer, processExists, ROOT, startIceFlixService } from "./harness.ts";

/** A platform of its own run by ./run_iceflix, with its data (users, catalog, logs, pids) in a scratch folder. */
class Platform {
  private constructor(
    readonly child: Child,
    readonly mainProxy: string,
    readonly icestormProxy: string,
    readonly dir: string,
  ) {}

  /** Starts ./run_iceflix with users demo/demo and alice/"Open Sesame 42!", and waits for Main's proxy. */
  static async start(properties: string[]): Promise<Platform> {
    // Inside the checkout: the services may only read and write there (run_service's permissions).
    const dir = await Deno.makeTempDir({ dir: `${ROOT}data`, prefix: "client-test-" });
    await Deno.writeTextFile(
      `${dir}/users.json`,
      JSON.stringify({ demo: await sha256Hex("demo"), alice: await sha256Hex("Open Sesame 42!") }),
    );
    const [icestormPort, mainPort] = [await freePort(), await freePort()];
    const child = new Child(`${ROOT}run_iceflix`, [
      ...["--data", dir, "--icestorm-port", String(icestormPort)],
      ...["--main-endpoints", `tcp -h 127.0.0.1 -p ${mainPort}`],
      `--IceFlix.Auth.UsersFile=${dir}/users.json`,
      `--IceFlix.Catalog.DatabaseFile=${dir}/catalog.json`,
      "--IceFlix.Discovery.AnnounceInterval=1",
      ...properties,
    ]);
    const mainProxy = await child.line(1, 120);
    return new Platform(child, mainProxy, `IceStorm/TopicManager:tcp -h 127.0.0.1 -p ${icestormPort}`, dir);
  }

  /** The pids run_iceflix wrote in its pid files. */
  async pids(): Promise<number[]> {
    const pids: number[] = [];
    for (const service of ["main", "auth", "catalog", "streaming"]) {
      const text = await Deno.readTextFile(`${this.dir}/pids/${service}.pid`);
      pids.push(...text.split("\n").filter((line) => line.trim() !== "").map(Number));
    }
    return pids;
  }

  /** The client's arguments for this platform. */
  clientArgs(...more: string[]): string[] {
    return [this.mainProxy, `--IceStorm.TopicManager.Proxy=${this.icestormProxy}`, "--player", "headless", ...more];
  }
}

/** Runs ./run_client in script mode with `script` on stdin. */
async function runClientScript(args: string[], script: string) {
  const child = new Deno.Command(`${ROOT}run_client`, {
    args,
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(script));
  await writer.close();
  const output = await child.output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: text(output.stdout), stderr: text(output.stderr) };
}

/** The lines of a script-mode transcript after the `nth` run of `command`, up to the next command. */
function outputOf(stdout: string, command: string, nth = 1): string[] {
  const lines = stdout.split("\n").filter((line, index, all) => index < all.length - 1 || line !== "");
  const start = lines.findIndex((line, index) =>
    line === `> ${command}` && lines.slice(0, index + 1).filter((seen) => seen === line).length === nth
  );
  assert.ok(start >= 0, `command "${command}" (run ${nth}) not in the transcript:\n${stdout}`);
  const end = lines.findIndex((line, index) => index > start && line.startsWith("> "));
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

/** Every "playing m:ss, N frames received" of a transcript, as [seconds, frames]. */
function playingStates(lines: string[]): [number, number][] {
  return lines.flatMap((line) => {
    const match = /playing (\d+):(\d\d), (\d+) frames received/.exec(line);
    return match ? [[Number(match[1]) * 60 + Number(match[2]), Number(match[3])] as [number, number]] : [];
  });
}

Deno.test("end to end: run_iceflix, then the client searches, edits, plays with token renewal, and leaves", async (t) => {
  // Tokens live 2 s and a revoked stream waits 2 s for a new one: a 7 s playback lives through three renewals.
  const platform = await Platform.start(["--IceFlix.Auth.TokenLifetime=2", "--IceFlix.Controller.GracePeriod=2"]);
  try {
    const pids = await platform.pids();
    assert.equal(pids.length, 4, "one pid per service");
    assert.match(platform.child.stderr, /clients connect to Main at/);

    await t.step("script mode: search both ways, select, edit, play, stop, logout", async () => {
      const { code, stdout, stderr } = await runClientScript(
        platform.clientArgs("--IceFlix.LogLevel=info"),
        [
          "rename Nothing",
          "login demo",
          "not the password",
          "login demo",
          "demo",
          "search pattern",
          "exact TEST_PATTERN",
          "tags any no-such-tag",
          "1",
          "rename Test Card",
          'addtags e2e "two words"',
          'tags all e2e "two words"',
          "removetags e2e",
          "play",
          "wait 7",
          "stop",
          "logout",
          "play",
          "quit",
        ].join("\n") + "\n",
      );
      assert.equal(code, 1, "three commands were meant to fail");
      assert.doesNotMatch(stdout + stderr, /^\s+at /m, "no stack trace");
      assert.deepEqual(outputOf(stdout, "rename Nothing").slice(0, 1), [
        "error: editing needs a session (login) and a selected title (search, then its number)",
      ]);
      assert.ok(outputOf(stdout, "login demo").includes("error: wrong user name or password"));
      assert.doesNotMatch(stdout, /not the password|^> demo$/m, "password lines are never echoed");
      assert.match(stdout, /^logged in as demo$/m);
      assert.match(outputOf(stdout, "search pattern").join("\n"), /^ +1\. test_pattern {2}\(no tags\)$/m);
      assert.match(
        outputOf(stdout, "exact TEST_PATTERN").join("\n"),
        /^1 title named "TEST_PATTERN":\n +1\. test_pattern/,
      );
      assert.match(
        outputOf(stdout, "tags any no-such-tag")[0],
        /^no titles with any of the tags no-such-tag \(the previous results are still selectable\)$/,
      );
      assert.ok(outputOf(stdout, "1").includes("state: connected · user demo · selected «test_pattern» · not playing"));
      assert.ok(outputOf(stdout, "rename Test Card").includes("done: «Test Card», tags: none"));
      assert.ok(outputOf(stdout, 'addtags e2e "two words"').includes("done: «Test Card», tags: e2e, two words"));
      assert.match(outputOf(stdout, 'tags all e2e "two words"').join("\n"), / +1\. Test Card {2}\[e2e, two words\]/);
      assert.ok(outputOf(stdout, "removetags e2e").includes("done: «Test Card», tags: two words"));

      // Frames keep arriving after several token lifetimes plus grace periods: the client renewed its token and
      // answered every requestAuthentication in time.
      assert.match(outputOf(stdout, "play")[0], /^playing «Test Card» on UDP port \d+ \(player: headless/);
      const states = playingStates(outputOf(stdout, "wait 7"));
      const late = states.filter(([seconds]) => seconds >= 5);
      assert.ok(late.length >= 2, `states seen while playing: ${JSON.stringify(states)}`);
      assert.ok(late[0][1] > 0 && late.at(-1)![1] > late[0][1], `frames keep arriving: ${JSON.stringify(states)}`);
      assert.match(outputOf(stdout, "stop")[0], /^stopped: «Test Card» after 0:0\d, \d+ frames received$/);
      assert.ok((stderr.match(/session token expired; renewed/g) ?? []).length >= 2, stderr);
      assert.ok((stderr.match(/the stream asked for a new token; sent it/g) ?? []).length >= 2, stderr);
      assert.match(await Deno.readTextFile(`${platform.dir}/logs/streaming.log`), /closed \(stopped by the client\)/);

      assert.ok(outputOf(stdout, "logout").includes("logged out demo"));
      assert.equal(outputOf(stdout, "play", 2)[0], "error: playing needs a session (login)");
      assert.match(stdout, /^state: connected · not logged in · selected «Test Card» · not playing$/m);
    });

    await t.step("terminal: the password is never shown, and Ctrl-C leaves cleanly", async () => {
      const command = [`${ROOT}run_client`, ...platform.clientArgs()].map((arg) => `'${arg}'`).join(" ");
      // script(1) runs the client on a pseudo-terminal: what it prints is what a user would see. Its shell ($SHELL,
      // else sh) execs the client, so Ctrl-C reaches the client alone, as when a user starts it from a shell.
      const child = new Deno.Command("script", {
        args: ["-qec", `exec ${command}`, "/dev/null"],
        cwd: ROOT,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const keyboard = child.stdin.getWriter();
      let screen = "";
      const reading = (async () => {
        for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) screen += text;
      })();
      const waitFor = async (text: string) => {
        for (const deadline = Date.now() + 20_000; !screen.includes(text);) {
          assert.ok(Date.now() < deadline, `"${text}" never appeared on the terminal:\n${screen}`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      };
      const type = (keys: string) => keyboard.write(new TextEncoder().encode(keys));

      await waitFor("iceflix> ");
      await type("login alice\r");
      await waitFor("Password (not shown): ");
      await type("Open Sesame 42!\r");
      await waitFor("logged in as alice");
      await type("search\r");
      await waitFor("2 titles at all:");
      await waitFor("user alice");
      await type("\x03");
      const status = await child.status;
      await keyboard.close().catch(() => {});
      await reading;
      await child.stderr.cancel();
      assert.equal(status.code, 0, screen);
      assert.ok(!screen.includes("Open Sesame"), `the password appeared on the terminal:\n${screen}`);
      assert.match(screen, /logged out alice/, "leaving ends the session");
    });

    await t.step("run_iceflix stops everything it started on SIGTERM", async () => {
      assert.equal((await platform.child.stop("SIGTERM")).code, 0, platform.child.stderr);
      for (const pid of pids) {
        assert.ok(!processExists(pid), `process ${pid} is still running`);
      }
      const pidFiles = [...Deno.readDirSync(`${platform.dir}/pids`)].map((entry) => entry.name);
      assert.deepEqual(pidFiles, [], "pid files removed");
    });
  } finally {
    await platform.child.stop("SIGTERM");
    await Deno.remove(platform.dir, { recursive: true });
  }
});

Deno.test("client: Main unreachable or without services -> announced retries, then one clean message", async () => {
  const port = await freePort();
  const unreachable = await runClientScript(
    [`Main:tcp -h 127.0.0.1 -p ${port}`, "--retries", "3", "--retry-pause", "0.1"],
    "search anything\nquit\n",
  );
  assert.equal(unreachable.code, 1);
  const problem = `Main at Main:tcp -h 127.0.0.1 -p ${port} is unreachable (::Ice::ConnectionRefusedException)`;
  assert.deepEqual(unreachable.stdout.split("\n").slice(0, 4), [
    `connecting to Main at Main:tcp -h 127.0.0.1 -p ${port}`,
    `${problem}; attempt 1 of 3, retrying in 0.1 s`,
    `${problem}; attempt 2 of 3, retrying in 0.1 s`,
    `error: ${problem}; gave up after 3 attempts`,
  ]);
  assert.deepEqual(outputOf(unreachable.stdout, "search anything"), [
    "error: not connected to Main (use connect)",
    "state: not connected · not logged in · nothing selected · not playing",
  ]);
  assert.equal(unreachable.stderr.trim(), "", "nothing else, no stack trace");

  // A Main with nothing to hand out answers TemporaryUnavailable: retried the same way.
  const icestorm = await IceStormServer.start();
  const main = await startIceFlixService("main", ["--MainAdapter.Endpoints=tcp -h 127.0.0.1", icestorm.option]);
  try {
    const empty = await runClientScript(
      [main.proxy, icestorm.option, "--IceFlix.Client.Retries=2", "--IceFlix.Client.RetryPause=0.1"],
      "search anything\n",
    );
    assert.equal(empty.code, 1);
    assert.deepEqual(outputOf(empty.stdout, "search anything"), [
      "Main has no catalog service available yet; attempt 1 of 2, retrying in 0.1 s",
      "error: Main has no catalog service available yet; gave up after 2 attempts",
      "state: connected · not logged in · nothing selected · not playing",
    ]);
  } finally {
    await main.child.stop();
    await icestorm.stop();
  }
});
