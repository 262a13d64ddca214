#!/usr/bin/env node
// Registers tsx's loader and runs the TypeScript CLI in this process, so the installed command and
// `npm run inflora` are the same code.
import { register } from "tsx/esm/api";

register();
await import("../cli/main.ts");
