#!/usr/bin/env node
// The installed command runs the compiled CLI. `npm run build` writes dist/; `npm ci` in a clone and
// `npm pack` run it through the `prepare` script. `npm run inflora` runs the TypeScript sources instead.
import { existsSync } from "node:fs";

const main = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  process.stderr.write("inflora: dist/ is missing: run `npm run build` in the package folder\n");
  process.exit(1);
}
await import(main.href);
