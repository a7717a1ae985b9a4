/**
 * `deno task bench`: runs every `bench/*_bench.ts` program in turn, each in
 * its own process, and prints the figures they print. Benchmarks measure;
 * they assert nothing. `deno task bench NAME` runs only the files containing NAME.
 *
 * @module
 */
const here = new URL(".", import.meta.url).pathname;
const filter = Deno.args[0] ?? "";
const files = [...Deno.readDirSync(here)]
  .map((entry) => entry.name)
  .filter((name) => name.endsWith("_bench.ts") && name.includes(filter))
  .sort();
let failed = 0;
for (const file of files) {
  console.log(`\n## ${file}`);
  const { success } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", `${here}${file}`],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!success) {
    console.log(`${file} failed`);
    failed++;
  }
}
Deno.exit(failed === 0 ? 0 : 1);
