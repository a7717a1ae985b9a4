/** The default of `IceFlix.Streaming.MaxStreams`: the smallest of the machine's CPU, memory and descriptor budgets. */
import assert from "node:assert/strict";
import { machineStreamLimit } from "../streaming.ts";

Deno.test("machineStreamLimit: 75 streams per core, half the available memory at 14 MB, a quarter of ulimit -n at 2", () => {
  // This machine as measured in issue 14: 2 cores, 22 GB free, ulimit -n 20000: the CPU decides.
  const roomy = machineStreamLimit({ cores: 2, availableMegabytes: 22_000, descriptors: 20_000 });
  assert.deepEqual([roomy.streams, roomy.bound], [150, "cpu"]);
  assert.match(roomy.reasons, /CPU 2 core\(s\) x 75 = 150; memory 22000 MB available \/ 2 \/ 14 MB = 785; /);
  assert.match(roomy.reasons, /descriptors 20000 \(ulimit -n\) \/ 4 \/ 2 = 2500$/);
  // A small machine: 1 GB free leaves memory for 36 senders.
  assert.deepEqual(
    Object.values(machineStreamLimit({ cores: 8, availableMegabytes: 1024, descriptors: 65_536 })).toString(),
    "36,CPU 8 core(s) x 75 = 600; memory 1024 MB available / 2 / 14 MB = 36; descriptors 65536 (ulimit -n) / 4 / 2 = 8192,memory",
  );
  // The common ulimit -n of 1024: 128 senders.
  const narrow = machineStreamLimit({ cores: 4, availableMegabytes: 8192, descriptors: 1024 });
  assert.deepEqual([narrow.streams, narrow.bound], [128, "descriptors"]);
  // Never below one stream, however small the machine.
  assert.equal(machineStreamLimit({ cores: 1, availableMegabytes: 10, descriptors: 4 }).streams, 1);
});
