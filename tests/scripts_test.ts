/**
 * scripts.sh, the shell library of the scripts: `--help` is the whole header
 * of each script, properties are read from the configuration files, and only
 * a process that runs an IceFlix service counts as one. Bash processes only,
 * no IceStorm: a second or so.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ROOT } from "../harness.ts";

/** Runs `command` in bash with scripts.sh sourced; whether it succeeded, and its stdout. */
async function withLibrary(command: string): Promise<{ success: boolean; stdout: string }> {
  const output = await new Deno.Command("bash", { args: ["-c", `source "${ROOT}scripts.sh" && ${command}`], cwd: ROOT })
    .output();
  return { success: output.success, stdout: new TextDecoder().decode(output.stdout) };
}

Deno.test("scripts: --help prints the whole header comment, however long it is", async () => {
  for (const script of ["add_user", "reload_media", "run_demo", "run_drills", "run_iceflix", "run_icestorm"]) {
    const lines = (await Deno.readTextFile(`${ROOT}${script}`)).split("\n");
    const header = lines.slice(1, lines.findIndex((line, i) => i > 0 && !line.startsWith("#")))
      .map((line) => line.replace(/^# ?/, ""));
    const help = await new Deno.Command(`${ROOT}${script}`, { args: ["--help"] }).output();
    assert.ok(help.success, script);
    assert.equal(new TextDecoder().decode(help.stdout), `${header.join("\n")}\n`, script);
    assert.ok(header.length >= 3, `${script} has a header`);
  }
});

Deno.test("scripts: config_property reads the last setting of a property, exactly that name", async () => {
  const file = await Deno.makeTempFile({ suffix: ".config" });
  try {
    await Deno.writeTextFile(
      file,
      "# A.B=commented\nA.B = first\nAxB=not it\n  A.B=tcp -h 127.0.0.1 -p 10\nA.BC=other\n",
    );
    assert.equal((await withLibrary(`config_property "${file}" A.B`)).stdout, "tcp -h 127.0.0.1 -p 10\n");
    assert.equal((await withLibrary(`config_property "${file}" A.X`)).stdout, "");
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("scripts: runs_service recognises an IceFlix service by its script, nothing else", async () => {
  // A process whose command line ends in auth.ts, as run_service starts one, and one that only mentions it.
  const service = new Deno.Command("bash", { args: ["-c", "sleep 30; true", "auth.ts"] }).spawn();
  const bystander = new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    assert.ok((await withLibrary(`runs_service ${service.pid} auth`)).success);
    assert.ok(!(await withLibrary(`runs_service ${service.pid} streaming`)).success);
    assert.ok(!(await withLibrary(`runs_service ${bystander.pid} auth`)).success);
    assert.ok(!(await withLibrary("runs_service not-a-pid auth")).success);
  } finally {
    service.kill("SIGKILL");
    bystander.kill("SIGKILL");
    await Promise.all([service.status, bystander.status]);
  }
});
