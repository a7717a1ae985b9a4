/**
 * Unit tests of prompt_secret.ts: keys typed on a pretend terminal, in
 * milliseconds and without permissions (`deno task test:unit`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { promptSecret, type SecretInput } from "../prompt_secret.ts";

/** A terminal on which `chunks` are typed, one read each; it records raw mode and what is shown. */
function terminal(chunks: (string | Uint8Array)[], isTerminal = true) {
  const encoder = new TextEncoder();
  const pending = chunks.map((chunk) => typeof chunk === "string" ? encoder.encode(chunk) : chunk);
  const rawModes: boolean[] = [];
  let shown = "";
  const input: SecretInput = {
    isTerminal: () => isTerminal,
    setRaw: (raw) => void rawModes.push(raw),
    read: (buffer) => {
      const chunk = pending.shift();
      if (chunk === undefined) return Promise.resolve(null);
      buffer.set(chunk);
      return Promise.resolve(chunk.length);
    },
  };
  const output = {
    write: (bytes: Uint8Array) => {
      shown += new TextDecoder().decode(bytes);
      return Promise.resolve(bytes.length);
    },
  };
  return { options: { input, output }, rawModes, shown: () => shown };
}

Deno.test("promptSecret: the line typed up to Enter, shown nowhere, raw mode on then off", async () => {
  const typed = terminal(["sec", "ret\r", "after"]);
  assert.deepEqual(await promptSecret("Password: ", typed.options), "secret");
  assert.deepEqual(typed.shown(), "Password: \n");
  assert.deepEqual(typed.rawModes, [true, false]);
});

Deno.test("promptSecret: Backspace removes a whole character, Ctrl-U the whole line", async () => {
  assert.deepEqual(await promptSecret("", terminal(["\x7fañ\x7fo\bx\n"]).options), "ax");
  assert.deepEqual(await promptSecret("", terminal(["wrong\x15right\r"]).options), "right");
});

Deno.test("promptSecret: a character split between two reads, and arrow keys ignored", async () => {
  const euro = new TextEncoder().encode("€");
  assert.deepEqual(
    await promptSecret("", terminal([euro.subarray(0, 1), euro.subarray(1), "\x1b[Ax\x1bOD\r"]).options),
    "€x",
  );
});

Deno.test("promptSecret: null on Ctrl-C, Ctrl-D, the end of the input, or no terminal", async () => {
  const cancelled = terminal(["abc\x03def\r"]);
  assert.deepEqual(await promptSecret("", cancelled.options), null);
  assert.deepEqual(cancelled.rawModes, [true, false]);
  assert.deepEqual(await promptSecret("", terminal(["abc\x04"]).options), null);
  assert.deepEqual(await promptSecret("", terminal(["abc"]).options), null);
  const notTerminal = terminal(["abc\n"], false);
  assert.deepEqual(await promptSecret("Password: ", notTerminal.options), null);
  assert.deepEqual(notTerminal.shown(), "");
  assert.deepEqual(notTerminal.rawModes, []);
});
