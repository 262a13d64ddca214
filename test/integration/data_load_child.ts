/**
 * Helper of data_loader_consistency.test.ts, run in a separate process with `npx tsx`: for each request
 * {opts, split, indices, loads}, opens the dataset and prints the SHA-256 of the float32 bytes of each
 * load, one line each. Argument: a JSON list of requests.
 */
import { createHash } from "node:crypto";
import { openDataset } from "../../worker/data/open_dataset.js";

for (const req of JSON.parse(process.argv[2])) {
  const ds = await openDataset(req.opts);
  for (const load of req.loads) {
    const x = await ds.load(req.split, req.indices, load);
    const hash = createHash("sha256").update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
    process.stdout.write(`${hash.digest("hex")}\n`);
  }
  await ds.close();
}
