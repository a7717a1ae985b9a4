/**
 * A catalog database's life in a few steps, for tests/catalog_test.ts to
 * watch under strace: it opens the database in folder `Deno.args[0]`, makes
 * one edit (the journal is created), and closes it (the journal is folded
 * into the file, then removed).
 */
import { CatalogDatabase } from "../catalog_database.ts";

const ignore = () => {};
const folder = Deno.args[0];
await Deno.writeTextFile(
  `${folder}/catalog.json`,
  JSON.stringify({ [`${"1".repeat(64)}`]: { name: "Uno", tags: [] } }),
);
const database = await CatalogDatabase.open(`${folder}/catalog.json`, {
  error: ignore,
  warn: ignore,
  info: ignore,
  debug: ignore,
});
await database.addTags("1".repeat(64), ["synced"]);
await database.close();
