/**
 * Unit tests of token_table.ts (`deno task test:unit`): the heap that expires
 * tokens soonest first, with lifetimes of a few milliseconds. What is
 * asserted is the order and the set of tokens expired, never how late.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type ExpiredToken, TokenTable } from "../token_table.ts";

/** A table whose expiries are collected; `expired(n)` resolves once `n` tokens have expired. */
function collectingTable() {
  const expired: ExpiredToken[] = [];
  let wake = () => {};
  const table = new TokenTable((batch) => {
    expired.push(...batch);
    wake();
  });
  const expiredCount = async (count: number) => {
    while (expired.length < count) await new Promise<void>((resolve) => wake = resolve);
    return expired;
  };
  return { table, expired, expiredCount };
}

Deno.test("TokenTable: tokens issued in any order expire soonest first, each once", async () => {
  const { table, expiredCount } = collectingTable();
  try {
    // 10 groups of lifetimes 4 ms apart, issued shuffled: the heap must order them.
    const lifetimes = Array.from({ length: 200 }, (_, i) => 4 * (i % 10) + 1);
    for (let i = lifetimes.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [lifetimes[i], lifetimes[j]] = [lifetimes[j], lifetimes[i]];
    }
    // Each expiry lies between the clock read before issue() and the one after, plus the lifetime (a loaded machine
    // may pause the loop anywhere, so the lifetimes alone do not give the order).
    const expiryOf = new Map<string, { earliest: number; latest: number }>();
    for (const lifetime of lifetimes) {
      const before = performance.now();
      const { token } = table.issue("replica-a", lifetime, "alice");
      expiryOf.set(token, { earliest: before + lifetime, latest: performance.now() + lifetime });
    }
    assert.equal(expiryOf.size, 200, "every token is new");
    assert.equal(table.size, 200);

    const expired = await expiredCount(200);
    for (let i = 1; i < expired.length; i++) {
      const [previous, next] = [expiryOf.get(expired[i - 1].token)!, expiryOf.get(expired[i].token)!];
      assert.ok(previous.earliest <= next.latest, `token ${i} expired after token ${i + 1}, which was due sooner`);
    }
    assert.equal(new Set(expired.map(({ token }) => token)).size, 200, "each token once");
    assert.ok(expired.every(({ issuer }) => issuer === "replica-a"));
    assert.equal(table.size, 0);
  } finally {
    table.stop();
  }
});

Deno.test("TokenTable: a token removed early never expires; the others still do", async () => {
  const { table, expired, expiredCount } = collectingTable();
  try {
    const removed = table.issue("replica-a", 1, "alice").token;
    const kept = table.issue("replica-a", 5, "alice").token;
    assert.ok(table.isLive(removed));
    assert.ok(table.remove(removed));
    assert.ok(!table.isLive(removed));
    assert.ok(!table.remove(removed), "removed once");
    await expiredCount(1);
    assert.deepEqual(expired.map(({ token }) => token), [kept]);
  } finally {
    table.stop();
  }
});

Deno.test("TokenTable: a peer's token is added once, an expired one not at all; grants() lists the live ones and their users", () => {
  const { table } = collectingTable();
  try {
    const grant = { token: "ab".repeat(16), user: "bob", issuer: "replica-b", expiresAt: Date.now() + 60_000 };
    assert.ok(table.add(grant));
    assert.ok(!table.add(grant), "known already");
    assert.ok(
      !table.add({ token: "cd".repeat(16), user: "bob", issuer: "replica-b", expiresAt: Date.now() - 1 }),
      "expired",
    );
    assert.ok(table.isLive(grant.token));
    const own = table.issue("replica-a", 60_000, "alice");
    assert.match(own.token, /^[0-9a-f]{32}$/);
    assert.equal(table.userOf(own.token), "alice");
    assert.equal(table.userOf(grant.token), "bob");
    assert.equal(table.userOf("ef".repeat(16)), undefined, "unknown");
    const grants = table.grants().sort((a, b) => a.issuer.localeCompare(b.issuer));
    assert.deepEqual(grants.map(({ token, user, issuer }) => ({ token, user, issuer })), [
      { token: own.token, user: "alice", issuer: "replica-a" },
      { token: grant.token, user: "bob", issuer: "replica-b" },
    ]);
    assert.ok(grants.every(({ expiresAt }) => expiresAt > Date.now()));
  } finally {
    table.stop();
  }
});
