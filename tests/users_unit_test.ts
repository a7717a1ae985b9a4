/**
 * Unit tests of users.ts's pure parts (`deno task test:unit`); the users file
 * itself is tested with real processes in main_auth_test.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { isValidUserName, sha256Hex } from "../users.ts";

Deno.test("sha256Hex: the SHA-256 of the UTF-8 text, as 64 lowercase hex digits", async () => {
  assert.equal(await sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert.equal(await sha256Hex("demo"), "2a97516c354b68848cdbd8f54a226a0a55b21ed138e207ad6c5cbb9c00aa5aea");
  assert.equal(await sha256Hex("ñ"), "024bb90888ca89a15a19e9bdd8c712bfb070465fce1ef25e43c170ea44fc5e5f");
});

Deno.test("isValidUserName: letters, digits and . _ @ -, starting with a letter or digit, 1 to 64", () => {
  for (const name of ["demo", "Ana.María_2@iceflix-es", "7", "x".repeat(64)]) assert.ok(isValidUserName(name), name);
  for (const name of ["", "dave smith", ".hidden", "-x", "x".repeat(65), "a/b", "tab\tname"]) {
    assert.ok(!isValidUserName(name), name);
  }
});
