import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { routerProxyFor } from "../web.ts";
import { sha256 } from "../web/sha256.ts";

Deno.test("routerProxyFor: endpoints without a host get the page's host; configured hosts stay", () => {
  assert.equal(
    routerProxyFor("Glacier2/router:ws -p 10081", "10.250.0.11"),
    'Glacier2/router:ws -p 10081 -h "10.250.0.11"',
  );
  assert.equal(
    routerProxyFor("Glacier2/router:ws -h 127.0.0.1 -p 10081", "10.250.0.11"),
    "Glacier2/router:ws -h 127.0.0.1 -p 10081",
  );
  assert.equal(routerProxyFor("Glacier2/router:ws -p 10081", "[::1]"), 'Glacier2/router:ws -p 10081 -h "::1"');
  assert.equal(
    routerProxyFor('Glacier2/router:ws -h "::1" -p 1:ws -p 2', "example.org"),
    'Glacier2/router:ws -h "::1" -p 1:ws -p 2 -h "example.org"',
  );
  // A Host header is the browser's to choose: anything but an address or a name is not put into the proxy.
  assert.equal(routerProxyFor("Glacier2/router:ws -p 10081", 'x" -p 1'), "Glacier2/router:ws -p 10081");
});

Deno.test("the page's own SHA-256 (no Web Crypto over plain HTTP) agrees with node:crypto at every padding length", () => {
  // 0 to 200 bytes crosses every case of the padding (the length fits in the last block, or needs another).
  for (let length = 0; length <= 200; length++) {
    const data = crypto.getRandomValues(new Uint8Array(length));
    assert.equal(
      Buffer.from(sha256(data)).toString("hex"),
      createHash("sha256").update(data).digest("hex"),
      `${length}`,
    );
  }
  const password = new TextEncoder().encode("contraseña 🔑");
  assert.equal(Buffer.from(sha256(password)).toString("hex"), createHash("sha256").update(password).digest("hex"));
  const large = crypto.getRandomValues(new Uint8Array(65536));
  assert.equal(Buffer.from(sha256(large)).toString("hex"), createHash("sha256").update(large).digest("hex"));
});
