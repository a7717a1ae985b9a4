/**
 * Unit tests of login_guard.ts's throttle (`deno task test:unit`), on a clock
 * of the test's own; the Authenticator's answers are tested in
 * main_auth_test.ts.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { BURST_QUIET, FailureThrottle, FREE_FAILURES, hmacSha256, LONGEST_WAIT } from "../login_guard.ts";

Deno.test("FailureThrottle: free at first, then waits doubling up to the longest, per key", () => {
  const throttle = new FailureThrottle();
  const keys = ["user a", "host h"];
  let now = 1000;
  const waits: number[] = [];
  for (let attempt = 0; attempt < 12; attempt++) {
    const wait = throttle.reserve(keys, now);
    waits.push(wait);
    now += wait;
    const slowed = throttle.failed(keys, now);
    assert.deepEqual(slowed, attempt + 1 === FREE_FAILURES ? keys : [], "each key is reported once per burst");
  }
  assert.deepEqual(waits.slice(0, FREE_FAILURES + 1), [0, 0, 0, 250]);
  for (let i = FREE_FAILURES + 1; i < waits.length; i++) assert.ok(waits[i] >= waits[i - 1]);
  assert.equal(waits.at(-1), LONGEST_WAIT);
  assert.equal(throttle.reserve(["user b", "host other"], now), 0, "another user from another host waits nothing");
  assert.ok(throttle.reserve(["user b", "host h"], now) > 0, "another user from the same host waits");
});

Deno.test("FailureThrottle: attempts at once queue behind each other; success and a quiet minute end a burst", () => {
  const throttle = new FailureThrottle();
  const keys = ["user a", "host h"];
  for (let i = 0; i < FREE_FAILURES + 2; i++) throttle.failed(keys, 0);
  const parallel = [throttle.reserve(keys, 0), throttle.reserve(keys, 0), throttle.reserve(keys, 0)];
  assert.ok(parallel[0] < parallel[1] && parallel[1] < parallel[2], `queued: ${parallel}`);

  throttle.succeeded("user a");
  assert.equal(throttle.failures("user a", 0), 0);
  assert.ok(throttle.failures("host h", 0) > 0, "a login that works does not clear its host");

  const later = parallel[2] + LONGEST_WAIT + BURST_QUIET + 1;
  assert.equal(throttle.failures("host h", later), 0, "a quiet minute ends the burst");
  assert.equal(throttle.reserve(keys, later), 0);
  for (let i = 1; i < FREE_FAILURES; i++) assert.deepEqual(throttle.failed(keys, later), []);
  assert.deepEqual(throttle.failed(keys, later), keys, "a new burst is reported again");
});

Deno.test("hmacSha256: the digests of node:crypto's HMAC-SHA-256, for keys of every length up to a block", () => {
  for (const length of [0, 1, 16, 32, 63, 64]) {
    const key = randomBytes(length);
    const digest = hmacSha256(key);
    for (const text of ["", "pbkdf2$...\nab12", "ñ".repeat(200)]) {
      assert.deepEqual(new Uint8Array(digest(text)), new Uint8Array(createHmac("sha256", key).update(text).digest()));
    }
  }
  assert.throws(() => hmacSha256(randomBytes(65)), RangeError);
});
