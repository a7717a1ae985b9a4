/**
 * End to end: ./run_iceflix brings the whole platform up (its own IceStorm,
 * Main and free ports, short token lifetime and grace period), and the client
 * (./run_client) is driven as a user would drive it: in script mode, and on a
 * pseudo-terminal (script(1)), where what it shows is read off an emulated
 * screen. The terminal checks are numbered after issue 11's points. Real
 * IceStorm, real services, real GStreamer on both ends.
 */
import assert from "node:assert/strict";
import { sha256Hex } from "../users.ts";
import { Child, delay, freePort, IceStormServer, processExists, ROOT, startIceFlixService } from "../harness.ts";
import { TerminalScreen } from "./terminal_screen.ts";

/** A platform of its own run by ./run_iceflix, with its data (users, catalog, logs, pids) in a scratch folder. */
class Platform {
  private constructor(
    readonly child: Child,
    readonly mainProxy: string,
    readonly icestormPort: number,
    readonly mainPort: number,
    readonly dir: string,
  ) {}

  /**
   * Starts ./run_iceflix with users demo/demo and alice/"Open Sesame 42!", and waits for Main's proxy. `again`
   * starts a stopped platform anew on the same ports and data.
   */
  static async start(properties: string[], again?: Platform): Promise<Platform> {
    // Inside the checkout: the services may only read and write there (run_service's permissions).
    const dir = again?.dir ?? await Deno.makeTempDir({ dir: `${ROOT}data`, prefix: "client-test-" });
    if (!again) {
      await Deno.writeTextFile(
        `${dir}/users.json`,
        JSON.stringify({ demo: await sha256Hex("demo"), alice: await sha256Hex("Open Sesame 42!") }),
      );
    }
    const [icestormPort, mainPort] = again
      ? [again.icestormPort, again.mainPort]
      : [await freePort(), await freePort()];
    const child = new Child(`${ROOT}run_iceflix`, [
      ...["--data", dir, "--icestorm-port", String(icestormPort), "--no-web"],
      ...["--main-endpoints", `tcp -h 127.0.0.1 -p ${mainPort}`],
      `--IceFlix.Auth.UsersFile=${dir}/users.json`,
      `--IceFlix.Catalog.DatabaseFile=${dir}/catalog.json`,
      "--IceFlix.Discovery.AnnounceInterval=1",
      ...properties,
    ]);
    const mainProxy = await child.line(1, 120);
    return new Platform(child, mainProxy, icestormPort, mainPort, dir);
  }

  get icestormProxy(): string {
    return `IceStorm/TopicManager:tcp -h 127.0.0.1 -p ${this.icestormPort}`;
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

/** Columns and rows of the pseudo-terminal (tmux's 160x45, as the user had). */
const [COLUMNS, ROWS] = [160, 45];

/**
 * ./run_client on a pseudo-terminal: keys typed in, the screen read off a TerminalScreen. script(1)'s shell
 * ($SHELL, else sh; CI sets none) execs the client, so Ctrl-C reaches the client alone, as when a user starts it.
 */
class TerminalClient {
  readonly #child: Deno.ChildProcess;
  readonly #keyboard: WritableStreamDefaultWriter<Uint8Array>;
  readonly screen = new TerminalScreen(COLUMNS, ROWS);
  readonly #reading: Promise<void>;
  /** The number of screen lines when {@linkcode mark} was last called: waits look below it. */
  #mark = 0;

  constructor(args: string[]) {
    const command = [`${ROOT}run_client`, ...args].map((arg) => `'${arg}'`).join(" ");
    const child = this.#child = new Deno.Command("script", {
      args: ["-qec", `stty cols ${COLUMNS} rows ${ROWS}; exec ${command}`, "/dev/null"],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#keyboard = this.#child.stdin.getWriter();
    this.#reading = (async () => {
      for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) this.screen.write(text);
    })();
  }

  /** Types `keys` at once (a person's keys arrive one by one: type a Tab alone, after a pause). */
  async type(...keys: string[]): Promise<void> {
    for (const key of keys) {
      await this.#keyboard.write(new TextEncoder().encode(key));
      await delay(keys.length > 1 ? 150 : 0);
    }
  }

  /** From now on, waits look at the lines below the current last one (the prompt's two lines included). */
  mark(): void {
    this.#mark = Math.max(0, this.screen.lines().length - 2);
  }

  /** The lines since the mark. */
  linesSinceMark(): string[] {
    return this.screen.lines().slice(this.#mark);
  }

  /** Waits until a line since the mark matches `pattern` (a string: a line that contains it); returns it. */
  async waitFor(pattern: string | RegExp, seconds = 30): Promise<string> {
    const matches = (line: string) => typeof pattern === "string" ? line.includes(pattern) : pattern.test(line);
    for (const deadline = Date.now() + seconds * 1000;;) {
      const line = this.linesSinceMark().find(matches);
      if (line !== undefined) return line;
      assert.ok(Date.now() < deadline, `${pattern} never appeared on the terminal:\n${this.screen.text()}`);
      await delay(50);
    }
  }

  /** The state line, the one above the prompt. */
  stateLine(): string {
    const lines = this.screen.lines();
    const prompt = lines.findLastIndex((line) => line.startsWith("iceflix>"));
    return prompt > 0 ? lines[prompt - 1] : "";
  }

  /** Waits until the state line matches `pattern`. */
  async waitForState(pattern: RegExp, seconds = 30): Promise<void> {
    for (const deadline = Date.now() + seconds * 1000; !pattern.test(this.stateLine());) {
      assert.ok(Date.now() < deadline, `the state line never matched ${pattern}:\n${this.screen.text()}`);
      await delay(50);
    }
  }

  /** Waits for the client to end. */
  async status(): Promise<Deno.CommandStatus> {
    const status = await this.#child.status;
    await this.#keyboard.close().catch(() => {});
    await this.#reading;
    return status;
  }

  /** Ends the client if it still runs (a failed test). */
  async kill(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Ended already.
    }
    await this.status().catch(() => {});
  }
}

/** A free TCP port's Main proxy: nothing answers there. */
async function deadMainProxy(): Promise<string> {
  return `Main:tcp -h 127.0.0.1 -p ${await freePort()}`;
}

/** Tokens live 2 s and a revoked stream waits 2 s for a new one: a 7 s playback lives through three renewals. */
const PLATFORM_PROPERTIES = ["--IceFlix.Auth.TokenLifetime=2", "--IceFlix.Controller.GracePeriod=2"];

Deno.test("end to end: run_iceflix, then the client searches, edits, plays with token renewal, and leaves", async (t) => {
  let platform = await Platform.start(PLATFORM_PROPERTIES);
  try {
    assert.equal((await platform.pids()).length, 4, "one pid per service");
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
      assert.ok(outputOf(stdout, "rename Test Card").includes("done: «Test Card»  (no tags)"));
      assert.ok(outputOf(stdout, 'addtags e2e "two words"').includes("done: «Test Card»  [e2e, two words]"));
      assert.match(outputOf(stdout, 'tags all e2e "two words"').join("\n"), / +1\. Test Card {2}\[e2e, two words\]/);
      assert.ok(outputOf(stdout, "removetags e2e").includes("done: «Test Card»  [two words]"));

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

    await t.step(
      "terminal: line editor, Ctrl-C, quotes, words, wording, logs above the prompt (issue 11)",
      async () => {
        const client = new TerminalClient(
          platform.clientArgs("--IceFlix.LogLevel=info", "--attempts", "30", "--retry-pause", "1"),
        );
        try {
          await client.waitForState(/^connected · not logged in · nothing selected · not playing$/);
          // 13: one line at start points to help, instead of the whole list.
          assert.ok(client.screen.text().includes("type help for the commands"), client.screen.text());
          assert.ok(!client.screen.text().includes("Commands:"), "the help is not printed at start");

          // 10: select with no results says so, without asking for a number first.
          client.mark();
          await client.type("select\r");
          await client.waitFor("error: selecting needs search results");
          assert.ok(!client.linesSinceMark().some((line) => line.includes("Number:")), client.screen.text());

          // 8: Left moves the cursor (srch ball, Left x8, ea: search ball); Up recalls the line; Tab completes a
          // command; Ctrl-W deletes a word.
          client.mark();
          await client.type("srch ball", ...Array(8).fill("\x1b[D"), "ea", "\r");
          await client.waitFor('1 title whose name contains "ball":');
          client.mark();
          await client.type("\x1b[A", "\r");
          await client.waitFor('1 title whose name contains "ball":');
          client.mark();
          await client.type("resu", "\t", "\r");
          await client.waitFor(/^ +1\. bouncing_ball {2}\(no tags\)$/);
          client.mark();
          await client.type("search nothing", "\x17", "card\r");
          await client.waitFor('1 title whose name contains "card":');

          // 9: quotes are removed from a search's text.
          client.mark();
          await client.type('search "bouncing"\r');
          await client.waitFor('1 title whose name contains "bouncing":');

          // 3: Ctrl-C at the prompt cancels the line, and the client stays; at the password prompt, the login.
          client.mark();
          await client.type("search junk", "\x03", "status\r");
          await client.waitFor(`Main at ${platform.mainProxy}: connected`);
          // 12: status says where Main and IceStorm are; the state is shown once, on the state line.
          const shown = client.screen.lines();
          const status = shown.lastIndexOf("iceflix> status");
          assert.match(
            shown.slice(status + 1).join("\n"),
            /^Main at .*: connected\nIceStorm at .*\nconnected · [^\n]*\niceflix>$/,
          );
          assert.ok(!client.linesSinceMark().some((line) => line.includes('"junk"')), client.screen.text());
          client.mark();
          await client.type("login alice\r");
          await client.waitFor("Password (not shown):");
          await client.type("Open", "\x03");
          await client.waitFor(/^cancelled$/);
          await client.waitForState(/· not logged in ·/);
          client.mark();
          await client.type("login alice\r");
          await client.waitFor("Password (not shown):");
          await client.type("Open Sesame 42!\r");
          await client.waitFor("logged in as alice");
          assert.ok(
            !client.screen.text().includes("Open"),
            `the password appeared on the terminal:\n${client.screen.text()}`,
          );

          // 12 and 13: wording, and results sorted by name.
          client.mark();
          await client.type("search\r");
          await client.waitFor("2 titles in the catalog:");
          await client.waitFor(/^ +2\. /);
          const results = client.linesSinceMark().filter((line) => /^ +\d\. /.test(line));
          assert.deepEqual(results, ["  1. bouncing_ball  (no tags)", "  2. Test Card  [two words]"]);
          client.mark();
          await client.type("1\r");
          await client.waitForState(/selected «bouncing_ball»/);
          await client.type('rename "Quoted Name"\r');
          await client.waitFor("done: «Quoted Name»  (no tags)");

          // 10: extra words are refused alike; "tags all" asks for its tags.
          client.mark();
          await client.type("select 2 extra\r");
          await client.waitFor('error: select takes one word; remove "extra"');
          await client.type("1 2\r");
          await client.waitFor('error: select takes one word; remove "2"');
          await client.type("tags all\r");
          await client.waitFor("Tags:");
          await client.type("nosuch\r");
          await client.waitFor("no titles with all of the tags nosuch");

          // 7: log lines (each token renewal, at info) are printed on lines of their own above the prompt, and no
          // redraw leaves a second state line.
          client.mark();
          await client.waitFor(/^\S+ client INFO session token expired; renewed$/);
          const lines = client.screen.lines();
          assert.ok(!lines.some((line) => /iceflix> .*client INFO/.test(line)), client.screen.text());
          const isState = (line: string) => /^(connected|connecting|reconnecting|not connected) · /.test(line);
          assert.ok(!lines.some((line, i) => isState(line) && isState(lines[i + 1] ?? "")), client.screen.text());

          // 2 and 1: while a title plays, Main dies: the state line says so by itself; a search retries while the
          // prompt stays usable and says what it does; stop stops the stream meanwhile; Ctrl-C cancels the search.
          client.mark();
          await client.type("play\r");
          await client.waitForState(/playing 0:0\d, [1-9]\d* frames received/);
          const mainPid = Number((await Deno.readTextFile(`${platform.dir}/pids/main.pid`)).trim().split("\n")[0]);
          Deno.kill(mainPid, "SIGKILL");
          await client.waitForState(/^reconnecting · user alice · selected «Quoted Name» · playing/);
          client.mark();
          await client.type("search\r");
          await client.waitFor(
            /^Main at .* is unreachable \(connection refused: nothing listens there\); attempt 1 of 30/,
          );
          await client.waitForState(/· searching… \(Ctrl-C cancels\)$/);
          await client.type("stop\r");
          await client.waitFor(/^stopped: «Quoted Name» after 0:\d\d, \d+ frames received$/);
          await client.waitForState(/not playing · searching… \(Ctrl-C cancels\)$/);
          await client.type("\x03");
          await client.waitFor(/^cancelled: searching$/);
          await client.waitForState(/^reconnecting · user alice · selected «Quoted Name» · not playing$/);
          await client.type("help\r");
          await client.waitFor(/^ +quit +leave/);

          // 1 and 6: Main back: the state line says so, and the session is renewed by itself.
          const main = await startIceFlixService("main", [
            `--MainAdapter.Endpoints=tcp -h 127.0.0.1 -p ${platform.mainPort}`,
            `--IceStorm.TopicManager.Proxy=${platform.icestormProxy}`,
            "--IceFlix.Discovery.AnnounceInterval=1",
          ]);
          try {
            await client.waitFor(`Main at ${platform.mainProxy} answers again`);
            await client.waitFor("session of alice renewed (Main answers again)");
            await client.waitForState(/^connected · user alice/);
          } finally {
            await main.child.stop();
          }

          // 6: the whole platform restarts (a new Authenticator, which never heard of the old token): the state goes
          // to reconnecting and back, the session is renewed, and renewals go on with the new Authenticator.
          await client.waitForState(/^reconnecting · user alice/);
          await platform.child.stop("SIGTERM");
          client.mark();
          platform = await Platform.start(PLATFORM_PROPERTIES, platform);
          await client.waitFor("session of alice renewed (Main answers again)");
          await client.waitForState(/^connected · user alice/);
          client.mark();
          await client.waitFor(/^\S+ client INFO session token expired; renewed$/);
          client.mark();
          await client.type("search card\r");
          await client.waitFor('1 title whose name contains "card":');

          // 11: no raw Ice type names anywhere.
          assert.ok(!client.screen.text().includes("::Ice::"), client.screen.text());
          // Ctrl-D leaves, logging out.
          await client.type("\x04");
          assert.equal((await client.status()).code, 0, client.screen.text());
          assert.match(client.screen.text(), /logged out alice/);
        } finally {
          await client.kill();
        }
      },
    );

    await t.step(
      "terminal: one 'not connected', plain connect, a port that is not a Main (issue 11: 4, 11)",
      async () => {
        const startProxy = await deadMainProxy();
        const client = new TerminalClient([
          startProxy,
          `--IceStorm.TopicManager.Proxy=${platform.icestormProxy}`,
          ...["--attempts", "2", "--retry-pause", "0"],
        ]);
        try {
          await client.waitFor(
            `error: Main at ${startProxy} is unreachable (connection refused: nothing listens there); gave up after 2 attempts`,
          );
          await client.waitForState(/^not connected · /);
          // 4: after a failed connect a command retries the same way as after a failed operation.
          client.mark();
          await client.type("search\r");
          await client.waitFor(
            `Main at ${startProxy} is unreachable (connection refused: nothing listens there); attempt 1 of 2`,
          );
          await client.waitFor(/^error: .*gave up after 2 attempts$/);
          // 11: a live port that is not a Main is said so, and not retried.
          client.mark();
          const notMain = `Main:tcp -h 127.0.0.1 -p ${platform.icestormPort}`;
          await client.type(`connect ${notMain}\r`);
          await client.waitFor(`error: ${notMain} answers, but it is not an IceFlix Main (wrong port or identity?)`);
          assert.ok(!client.linesSinceMark().some((line) => line.includes("attempt 1")), client.screen.text());
          // 4: plain connect goes back to the Main given at start; then the platform's Main connects.
          client.mark();
          await client.type("connect\r");
          await client.waitFor(`connecting to Main at ${startProxy}`);
          await client.waitFor(/^error: .*gave up after 2 attempts$/);
          await client.type(`connect ${platform.mainProxy}\r`);
          await client.waitForState(/^connected · /);
          // A connect to another Main that fails keeps the one in use, and the state says connected meanwhile.
          client.mark();
          const other = await deadMainProxy();
          await client.type(`connect ${other}\r`);
          await client.waitFor("gave up after 2 attempts; still using Main at Main");
          await client.waitForState(/^connected · /);
          assert.ok(!client.screen.text().includes("::Ice::"), client.screen.text());
          await client.type("quit\r");
          assert.equal((await client.status()).code, 0, client.screen.text());
        } finally {
          await client.kill();
        }
      },
    );

    await t.step(
      "terminal: a wrong IceStorm is reported with its address and the fix; renewals go on (issue 11: 5)",
      async () => {
        const wrongIceStorm = `IceStorm/TopicManager:tcp -h 127.0.0.1 -p ${await freePort()}`;
        const client = new TerminalClient([
          platform.mainProxy,
          `--IceStorm.TopicManager.Proxy=${wrongIceStorm}`,
          ...["--player", "headless", "--IceFlix.LogLevel=info"],
        ]);
        try {
          await client.waitForState(/^connected · /);
          await client.type("login alice\r");
          await client.waitFor("Password (not shown):");
          await client.type("Open Sesame 42!\r");
          await client.waitFor(
            `IceStorm at ${wrongIceStorm} does not answer (connection refused: nothing listens there)`,
          );
          await client.waitFor("--IceStorm.TopicManager.Proxy=...");
          assert.ok(!client.screen.text().includes("::Ice::"), client.screen.text());
          client.mark();
          await client.waitFor(/^\S+ client INFO session token expired; renewed$/);
          await client.type("quit\r");
          assert.equal((await client.status()).code, 0, client.screen.text());
        } finally {
          await client.kill();
        }
      },
    );

    await t.step("run_iceflix stops everything it started on SIGTERM", async () => {
      const pids = await platform.pids();
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
  const longQuery = "x".repeat(20_000);
  const unreachable = await runClientScript(
    [`Main:tcp -h 127.0.0.1 -p ${port}`, "--attempts", "3", "--retry-pause", "0.1"],
    `search anything\nsearch ${longQuery}\nquit\n`,
  );
  assert.equal(unreachable.code, 1);
  const problem = `Main at Main:tcp -h 127.0.0.1 -p ${port} is unreachable (connection refused: nothing listens there)`;
  assert.deepEqual(unreachable.stdout.split("\n").slice(0, 4), [
    `connecting to Main at Main:tcp -h 127.0.0.1 -p ${port}`,
    `${problem}; attempt 1 of 3, retrying in 0.1 s`,
    `${problem}; attempt 2 of 3, retrying in 0.1 s`,
    `error: ${problem}; gave up after 3 attempts`,
  ]);
  // After a failed connect, a command retries just as after a failed operation (one "not connected").
  assert.deepEqual(outputOf(unreachable.stdout, "search anything"), [
    `${problem}; attempt 1 of 3, retrying in 0.1 s`,
    `${problem}; attempt 2 of 3, retrying in 0.1 s`,
    `error: ${problem}; gave up after 3 attempts`,
    "state: not connected · not logged in · nothing selected · not playing",
  ]);
  // A 20 KB line is quoted back cut short, with its length.
  assert.ok(unreachable.stdout.includes("… (20007 characters)"), unreachable.stdout);
  assert.ok(unreachable.stdout.split("\n").every((line) => line.length < 300), "no line echoes the whole query");
  assert.equal(unreachable.stderr.trim(), "", "nothing else, no stack trace");

  // --script FILE (here outside the checkout) is read by the client itself, as stdin would be.
  const script = await Deno.makeTempFile({ suffix: ".txt" });
  try {
    await Deno.writeTextFile(script, "# a comment\nstatus\n");
    const fromFile = await runClientScript(
      [`Main:tcp -h 127.0.0.1 -p ${port}`, "--attempts=1", "--script", script],
      "",
    );
    assert.deepEqual(outputOf(fromFile.stdout, "status"), [
      `Main at Main:tcp -h 127.0.0.1 -p ${port}: not connected`,
      "IceStorm at IceStorm/TopicManager:tcp -h 127.0.0.1 -p 10000: used once logged in",
      "state: not connected · not logged in · nothing selected · not playing",
    ]);
  } finally {
    await Deno.remove(script);
  }

  // A Main with nothing to hand out answers TemporaryUnavailable: retried the same way.
  const icestorm = await IceStormServer.start();
  const main = await startIceFlixService("main", ["--MainAdapter.Endpoints=tcp -h 127.0.0.1", icestorm.option]);
  try {
    const empty = await runClientScript(
      [main.proxy, icestorm.option, "--IceFlix.Client.Attempts=2", "--IceFlix.Client.RetryPause=0.1"],
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
