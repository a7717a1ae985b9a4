import assert from "node:assert/strict";
import { routerProxyFor } from "../web.ts";

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
