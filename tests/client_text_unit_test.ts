/**
 * Unit tests of client_text.ts: what the client says, in words, and the
 * order of search results. Milliseconds, no permissions (`deno task test:unit`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { Ice } from "ice";
// @ts-types="../slice/iceflix.d.ts"
import { IceFlix } from "../slice/iceflix.js";
// @ts-types="../slice/streams.d.ts"
import { IceFlixStreams } from "../slice/streams.js";
import { abbreviate } from "../client_commands.ts";
import { compareTitles, describeFailure, describeTags, explain } from "../client_text.ts";

Deno.test("compareTitles: by name, then id; unnamed last", () => {
  const titles = [
    { id: "b", name: "test_pattern" },
    { id: "z" },
    { id: "c", name: "Bouncing" },
    { id: "a", name: "test_pattern" },
  ];
  assert.deepEqual(titles.sort(compareTitles).map(({ id }) => id), ["c", "a", "b", "z"]);
});

Deno.test("describeFailure and explain: Ice failures in words, naming the service; never a ::Ice:: type id", () => {
  const failures = [
    new Ice.ConnectionRefusedException(),
    new Ice.ConnectTimeoutException(),
    new Ice.InvocationTimeoutException(),
    new Ice.ConnectionLostException(),
    new Ice.ObjectNotExistException(),
    new Ice.DNSException(),
  ];
  for (const failure of failures) assert.doesNotMatch(describeFailure(failure), /::Ice::|Exception/);
  assert.equal(describeFailure(new Ice.ConnectionRefusedException()), "connection refused: nothing listens there");
  assert.equal(
    explain(new IceFlix.TemporaryUnavailable(), "the catalog service"),
    "the catalog service is temporarily unavailable; try again later",
  );
  assert.equal(
    explain(new Ice.ConnectionLostException(), "the authentication service"),
    "the authentication service did not answer (the connection was lost)",
  );
  // A service's refusal in words (a limit, a full disk) is said as such; a servant's crash (a stack) is not.
  assert.equal(
    explain(new Ice.UnknownException("the tag is too long"), "the catalog service"),
    "the catalog service refused: the tag is too long",
  );
  assert.equal(
    explain(new Ice.UnknownException("TypeError: x is undefined\n    at f (catalog.ts:1:1)"), "the catalog service"),
    "the catalog service did not answer (the service failed: x is undefined)",
  );
  assert.equal(
    explain(new IceFlix.WrongMediaId("x".repeat(100))),
    `unknown media id ${abbreviate("x".repeat(100))} (search again)`,
  );
  // A stream limit is an Unauthorized with its reason: the reason, not "log in again".
  const limit = 'user "demo" already has 4 streams open on this media server, the most one user may (...)';
  assert.equal(explain(new IceFlixStreams.StreamLimitReached(limit)), limit);
});

Deno.test("describeTags: one wording in lists and after edits", () => {
  assert.equal(describeTags([]), "(no tags)");
  assert.equal(describeTags(["a", "b c"]), "[a, b c]");
});
