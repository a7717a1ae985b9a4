/**
 * IceFlix across hosts on IceGrid (issue 15): `./run_cluster` builds three
 * hosts and a client host as network namespaces, deploys deploy/iceflix.xml,
 * and tests/cluster_drill.ts, on the client host, makes the four
 * checks. Needs root (network namespaces); without it the test says so and is
 * skipped.
 */
import assert from "node:assert/strict";
import { Child, ROOT } from "../harness.ts";

const isRoot = Deno.uid() === 0;
if (!isRoot) console.log("cluster test skipped: it needs root (network namespaces, ./run_cluster)");

/** The network namespaces that exist now. */
async function namespaces(): Promise<string[]> {
  const output = await new Deno.Command("ip", { args: ["netns", "list"] }).output();
  return new TextDecoder().decode(output.stdout).split("\n").map((line) => line.split(" ")[0]).filter(Boolean);
}

Deno.test({
  name: "cluster: a client finds Main through IceGrid, servers restart, a host dies and comes back, IceStorm holds",
  ignore: !isRoot,
  async fn() {
    // The drill logs in as demo, added as ./run_demo adds it: a fresh checkout has no users.
    const addUser = new Deno.Command(`${ROOT}add_user`, { args: ["demo"], stdin: "piped", stdout: "null" }).spawn();
    await new Response("demo\n").body!.pipeTo(addUser.stdin);
    assert.ok((await addUser.status).success, "./add_user demo");
    // A name of its own: clusters of other runs on this machine keep theirs.
    const name = `ifx-${crypto.randomUUID().slice(0, 6)}`;
    // Quick discovery and short tokens, so that revocations and rejoins happen within the test.
    const cluster = new Child(`${ROOT}run_cluster`, [
      ...["--name", name, "announce-interval=1", "call-timeout=1", "token-lifetime=10"],
      // The drill's clients add a tag at every session, all to the sample: more than a title may have by default.
      "max-tags-per-title=100000",
    ]);
    try {
      const mains = [await cluster.line(1, 240), await cluster.line(2), await cluster.line(3)];
      assert.deepEqual(mains, [11, 12, 13].map((k) => `Main:tcp -h 10.250.0.${k} -p 10010`));
      const drill = await new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          `${name}-client`,
          Deno.execPath(),
          "run",
          "--allow-all",
          "tests/cluster_drill.ts",
          name,
        ],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(drill.stdout).trim().split("\n");
      const report = JSON.parse(stdout[stdout.length - 1]) as {
        checks: { what: string; ok: boolean; detail: string }[];
        figures: string[];
      };
      for (const figure of report.figures) console.log(figure);
      for (const check of report.checks) {
        console.log(`${check.ok ? "ok" : "FAILED"}  ${check.what}`);
        assert.ok(check.ok, `${check.what}\n${check.detail}\ndrill log:\n${new TextDecoder().decode(drill.stderr)}`);
      }
      assert.equal(report.checks.length, 12);
    } finally {
      await cluster.stop("SIGTERM");
    }
    assert.deepEqual((await namespaces()).filter((namespace) => namespace.startsWith(`${name}-`)), []);
    await Deno.remove(`${ROOT}data/cluster/${name}`, { recursive: true });
  },
});
