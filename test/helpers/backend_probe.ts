/** Prints the selected backend as JSON (or the error), for tests that need a fresh process. */
import { selectBackend } from "../../worker/backend.js";

try {
  const info = await selectBackend(process.argv[2] || undefined);
  process.stdout.write(`${JSON.stringify(info)}\n`);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ error: (err as Error).message })}\n`);
}
