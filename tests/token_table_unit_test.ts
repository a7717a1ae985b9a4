/**
 * Unit tests of token_table.ts (`deno task test:unit`): tokens that prove
 * themselves (made, recognised, and refused when forged or altered), and the
 * heap that expires tokens soonest first, with lifetimes of a tenth of a
 * second or so. What is asserted is the order and the set of tokens expired,
 * never how late.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { type ExpiredToken, type Grant, TOKEN_MAX_LENGTH, TokenMint, TokenTable } from "../token_table.ts";

/** A grant of a random token for alice, issued by replica-a, that expires in `lifetime` ms. */
function grant(lifetime: number, user = "alice", issuer = "replica-a"): Grant {
  return { token: randomBytes(16).toString("hex"), user, issuer, expiresAt: Date.now() + lifetime };
}

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
    // 10 groups of lifetimes 4 ms apart, issued shuffled: the heap must order them. The shortest is 100 ms: add()
    // refuses a token already expired, and a loaded machine may pause between grant() and add().
    const lifetimes = Array.from({ length: 200 }, (_, i) => 4 * (i % 10) + 100);
    for (let i = lifetimes.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [lifetimes[i], lifetimes[j]] = [lifetimes[j], lifetimes[i]];
    }
    // Each expiry lies between the clock read before issue() and the one after, plus the lifetime (a loaded machine
    // may pause the loop anywhere, so the lifetimes alone do not give the order).
    const expiryOf = new Map<string, { earliest: number; latest: number }>();
    for (const lifetime of lifetimes) {
      const before = Date.now();
      const issued = grant(lifetime);
      assert.ok(table.add(issued));
      expiryOf.set(issued.token, { earliest: before + lifetime, latest: Date.now() + lifetime });
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
    // Lifetimes long enough that neither has expired when it is added, on a loaded machine too.
    const removed = grant(100).token;
    const kept = grant(200);
    assert.ok(table.add({ ...kept, token: removed, expiresAt: kept.expiresAt - 100 }));
    assert.ok(table.add(kept));
    assert.ok(table.remove(removed));
    assert.ok(!table.remove(removed), "removed once");
    await expiredCount(1);
    assert.deepEqual(expired.map(({ token }) => token), [kept.token]);
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
    const own = { token: "ef".repeat(16), user: "alice", issuer: "replica-a", expiresAt: Date.now() + 60_000 };
    assert.ok(table.add(own));
    assert.equal(table.size, 2);
    const grants = table.grants().sort((a, b) => a.issuer.localeCompare(b.issuer));
    assert.deepEqual(grants.map(({ token, user, issuer }) => ({ token, user, issuer })), [
      { token: own.token, user: "alice", issuer: "replica-a" },
      { token: grant.token, user: "bob", issuer: "replica-b" },
    ]);
    assert.deepEqual(grants.map(({ expiresAt }) => expiresAt), [own.expiresAt, grant.expiresAt], "as shared");
  } finally {
    table.stop();
  }
});

/** A mint with fresh random keys (those of an installation). */
function newMint(): TokenMint {
  return new TokenMint(randomBytes(32), randomBytes(32));
}

Deno.test("TokenMint: a token tells its user and expiry to the installation that made it, and is new each time", () => {
  const mint = newMint();
  const expiresAt = Date.now() + 60_000;
  const tokens = Array.from({ length: 100 }, () => mint.mint("alice", expiresAt));
  assert.equal(new Set(tokens).size, 100, "every token is new");
  for (const token of tokens) {
    assert.match(token, /^[A-Za-z0-9_-]+$/, "base64url: safe in any text, URL or file name");
    assert.equal(mint.expiryOf(token), expiresAt);
    assert.ok(mint.isLive(token));
    assert.equal(mint.userOf(token), "alice");
    assert.ok(!Buffer.from(token, "base64url").includes("alice"), "the user is not in clear");
  }
  // Names of 1 to 32 bytes make tokens of one length; the longest name allowed (64 letters of 4 bytes) fits.
  assert.equal(mint.mint("a", expiresAt).length, mint.mint("b".repeat(32), expiresAt).length);
  for (const user of ["émile.o'brien@example", "\u{10400}".repeat(64), "x".repeat(64)]) {
    const token = mint.mint(user, expiresAt);
    assert.ok(token.length <= TOKEN_MAX_LENGTH);
    assert.equal(mint.userOf(token), user);
  }
  // Another installation's keys (also the same keys swapped) recognise none of them.
  const other = newMint();
  assert.ok(tokens.every((token) => other.expiryOf(token) === undefined && other.userOf(token) === undefined));
});

Deno.test("TokenMint: an expired token, an altered one, another spelling of one and garbage are all refused", () => {
  const mint = newMint();
  const live = mint.mint("alice", Date.now() + 60_000);
  assert.ok(!mint.isLive(mint.mint("alice", Date.now() - 1)), "expired");
  assert.equal(mint.userOf(mint.mint("alice", Date.now() - 1)), undefined, "expired: no user either");

  const bytes = Buffer.from(live, "base64url");
  /** `live` with byte `index` changed. */
  const altered = (index: number) => {
    const copy = Buffer.from(bytes);
    copy[index] ^= 1;
    return copy.toString("base64url");
  };
  // Every byte counts: the random bits, the expiry (a longer life), the user (another user), the MAC.
  for (let index = 0; index < bytes.length; index++) {
    assert.equal(mint.expiryOf(altered(index)), undefined, `byte ${index} altered`);
    assert.equal(mint.userOf(altered(index)), undefined, `byte ${index} altered`);
  }
  // The expiry pushed a year on, as an attacker would, without the key: refused.
  const extended = Buffer.from(bytes);
  extended.writeUIntBE(Date.now() + 365 * 86_400_000, 16, 6);
  assert.ok(!mint.isLive(extended.toString("base64url")));
  // One token, one spelling: base64 with padding or "+/", trailing junk, another case: none is the token.
  for (
    const spelling of [`${live}=`, `${live}==`, bytes.toString("base64"), `${live}.`, ` ${live}`, live.toUpperCase()]
  ) {
    if (spelling !== live) assert.ok(!mint.isLive(spelling), JSON.stringify(spelling));
  }
  for (const garbage of ["", "0".repeat(32), "f".repeat(32), live.slice(0, -1), live + live, "x".repeat(100_000)]) {
    assert.ok(!mint.isLive(garbage), `garbage of ${garbage.length} characters`);
    assert.equal(mint.userOf(garbage), undefined);
  }
});
