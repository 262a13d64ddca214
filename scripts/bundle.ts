/**
 * `npm run bundle`: writes dist/bundle/, one folder that runs with plain `node inflora.mjs …` where there is
 * no node_modules (GPU nodes without a route to a registry). See the README.md it writes for its layout.
 *
 * - `inflora.mjs`: the CLI as one ES module (esbuild).
 * - The modules the code starts as threads by file name, each a bundle of its own at the place the code
 *   looks for it: in a bundle every module's `import.meta.url` is the bundle's file, so a sibling
 *   `./transport_thread.js` of any source folder is a file beside `inflora.mjs`.
 * - Packages that find files from `__dirname` (gRPC's health and reflection .proto files, piscina's worker)
 *   see `modules/<their path under node_modules>`, where those files are copied.
 * - Native and wasm files loaded at run time: the OpenBLAS addon, the tfjs wasm binaries, sharp's addon
 *   with libvips; package.json (name and version: the package root, common/package_files.ts), the .proto
 *   sources, configs and the demo data.
 *
 * - Dawn's Node binding for this platform (npm `webgpu`: `dawn.node`), for the webgpu backend.
 *
 * tfjs-node(-gpu) is not carried (libtensorflow alone is hundreds of MB): the bundle computes on webgpu,
 * blas, wasm or cpu.
 */
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { parseArgs } from "node:util";
import { build, type Plugin } from "esbuild";

const ROOT = path.resolve(import.meta.dirname, "..");
// `npm run bundle -- --out DIR` writes elsewhere (the bundle test does, beside a concurrent `npm pack`).
const { values: cli } = parseArgs({ options: { out: { type: "string" } } });
const OUT = path.resolve(cli.out ?? path.join(ROOT, "dist", "bundle"));
const LIMIT_BYTES = 60 * 2 ** 20;
const require = createRequire(import.meta.url);

/** Thread entry points, by the file name the code asks for (see the header). */
const THREAD_ENTRIES: Record<string, string> = {
  "map-worker": "coordinator/linalg/map-worker.ts",
  design: "coordinator/inflora/design.ts",
  dualgpm: "coordinator/inflora/dualgpm.ts",
  eigh: "coordinator/linalg/eigh.ts",
  transport_thread: "coordinator/transport/transport_thread.ts",
  load_worker: "worker/data/load_worker.ts",
};

/** Files that packages read from `__dirname`, under node_modules. */
const PACKAGE_ASSETS = [
  "grpc-health-check/proto/health/v1/health.proto",
  "@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto",
  "@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto",
];

// Real path: esbuild reports resolved paths (node_modules may be a link).
const NODE_MODULES = realpathSync(path.join(ROOT, "node_modules"));

/** ESM output: CommonJS packages inside still call require and read __dirname / __filename. */
const BANNER = [
  'import { createRequire as __infloraCreateRequire } from "node:module";',
  'import { fileURLToPath as __infloraFileURLToPath } from "node:url";',
  'import { dirname as __infloraDirname, join as __infloraJoin } from "node:path";',
  "const require = __infloraCreateRequire(import.meta.url);",
  "const __filename = __infloraFileURLToPath(import.meta.url);",
  "const __dirname = __infloraDirname(__filename);",
].join("\n");

/** A declaration of an ES module's own `__dirname` (npm `webgpu` computes it from import.meta.url). */
const OWN_DIRNAME = /\b((?:const|let|var)\s+__dirname\s*=)[^;\n]*/;

/**
 * A package's `__dirname` becomes modules/<its folder under node_modules> inside the bundle: a CommonJS
 * module's every use, an ES module's own declaration of it.
 */
const packageDirname: Plugin = {
  name: "package-dirname",
  setup(b) {
    b.onLoad({ filter: /node_modules[\\/].*\.(c?js)$/ }, (args) => {
      const text = readFileSync(args.path, "utf8");
      if (!text.includes("__dirname")) return undefined;
      const rel = path.relative(NODE_MODULES, path.dirname(args.path)).split(path.sep).join("/");
      if (rel.startsWith("..")) return undefined;
      const inBundle = (from: string) => `__infloraJoin(${from}, "modules", ${JSON.stringify(rel)})`;
      const contents = OWN_DIRNAME.test(text)
        ? text.replace(
            OWN_DIRNAME,
            `$1 ${inBundle("__infloraDirname(__infloraFileURLToPath(import.meta.url))")}`,
          )
        : text.replace(/\b__dirname\b/g, inBundle("__dirname"));
      return { contents, loader: "js" };
    });
  },
};

/** sharp's addon comes from sharp/ in the bundle (its libvips beside it, where its rpath looks). */
const sharpAddon: Plugin = {
  name: "sharp-addon",
  setup(b) {
    b.onLoad({ filter: /sharp[\\/]dist[\\/]sharp\.mjs$/ }, (args) => {
      const text = readFileSync(args.path, "utf8");
      const from = `require("@img/sharp-${process.platform}-${process.arch}/sharp.node")`;
      if (!text.includes(from)) throw new Error(`${args.path}: no ${from} to redirect (sharp changed?)`);
      return {
        contents: text.replace(from, `require(${JSON.stringify(`./sharp/${sharpAddonRel()}`)})`),
        loader: "js",
      };
    });
  },
};

function sharpPackages(): { addon: string; libvips: string } {
  const img = path.join(NODE_MODULES, "@img");
  const addon = path.join(img, `sharp-${process.platform}-${process.arch}`);
  const libvips = path.join(img, `sharp-libvips-${process.platform}-${process.arch}`);
  for (const dir of [addon, libvips]) {
    if (!existsSync(dir)) throw new Error(`${dir} is missing: sharp's native parts (npm ci installs them)`);
  }
  return { addon, libvips };
}

/** The addon's path under sharp/ (its own file name carries the version). */
function sharpAddonRel(): string {
  const { addon } = sharpPackages();
  const file = readdirSync(path.join(addon, "lib")).find((f) => f.endsWith(".node"));
  if (!file) throw new Error(`${addon}/lib has no .node file`);
  return `@img/${path.basename(addon)}/lib/${file}`;
}

const common = {
  bundle: true,
  platform: "node" as const,
  format: "esm" as const,
  target: "node20",
  banner: { js: BANNER },
  // Optional native packages their users try and do without: tfjs-node(-gpu) (backend.ts), piscina's
  // @napi-rs/nice (thread priorities, which inflora does not set).
  external: ["@tensorflow/tfjs-node", "@tensorflow/tfjs-node-gpu", "@napi-rs/nice"],
  plugins: [packageDirname, sharpAddon],
  legalComments: "none" as const,
  logLevel: "warning" as const,
};

function copy(from: string, to: string): void {
  mkdirSync(path.dirname(to), { recursive: true });
  cpSync(from, to, { recursive: true, dereference: true });
}

function sizeOf(p: string): number {
  const s = statSync(p);
  if (!s.isDirectory()) return s.size;
  return readdirSync(p).reduce((sum, f) => sum + sizeOf(path.join(p, f)), 0);
}

async function main(): Promise<void> {
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };

  await build({
    ...common,
    entryPoints: [path.join(ROOT, "cli", "main.ts")],
    outfile: path.join(OUT, "inflora.mjs"),
  });
  // The threads in one build with shared chunks: piscina's worker and our load_worker must share one
  // piscina module (its workerData and move() live in module state), and the linear-algebra modules
  // share most of their code.
  await build({
    ...common,
    entryPoints: {
      ...Object.fromEntries(Object.entries(THREAD_ENTRIES).map(([k, v]) => [k, path.join(ROOT, v)])),
      "modules/piscina/dist/worker": path.join(path.dirname(require.resolve("piscina")), "worker.js"),
    },
    outdir: OUT,
    splitting: true,
    // At the top, like the entries: the code in a chunk finds its siblings from its own URL.
    chunkNames: "chunk-[hash]",
  });

  for (const asset of PACKAGE_ASSETS) copy(path.join(NODE_MODULES, asset), path.join(OUT, "modules", asset));
  const { addon, libvips } = sharpPackages();
  copy(path.join(addon, "lib"), path.join(OUT, "sharp", "@img", path.basename(addon), "lib"));
  copy(path.join(libvips, "lib"), path.join(OUT, "sharp", "@img", path.basename(libvips), "lib"));
  const wasmDist = path.join(
    path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json")),
    "dist",
  );
  for (const f of readdirSync(wasmDist).filter((f) => f.endsWith(".wasm"))) {
    copy(path.join(wasmDist, f), path.join(OUT, "wasm", f));
  }
  // Dawn for this platform only (the package carries every platform's, 21 MB each).
  const dawn = path.join(NODE_MODULES, "webgpu", "dist", `${process.platform}-${process.arch}`);
  if (existsSync(dawn)) copy(dawn, path.join(OUT, "modules", "webgpu", "dist", path.basename(dawn)));
  else process.stderr.write(`bundle: no ${dawn} (npm's webgpu package): the bundle has no webgpu backend\n`);
  const nativeAddon = path.join(ROOT, "native", "build", "Release", "inflora_native.node");
  if (existsSync(nativeAddon))
    copy(nativeAddon, path.join(OUT, "native", "build", "Release", "inflora_native.node"));
  else process.stderr.write("bundle: no native addon (npm run build:native): the bundle runs on wasm\n");
  copy(path.join(ROOT, "proto", "inflora"), path.join(OUT, "proto", "inflora"));
  copy(path.join(ROOT, "configs"), path.join(OUT, "configs"));
  copy(path.join(ROOT, "data", "demo"), path.join(OUT, "data", "demo"));
  writeFileSync(
    path.join(OUT, "package.json"),
    `${JSON.stringify({ name: "inflora", version: pkg.version, private: true, type: "module" }, null, 2)}\n`,
  );
  writeFileSync(path.join(OUT, "README.md"), readme(pkg.version));

  const bytes = sizeOf(OUT);
  process.stdout.write(`${path.relative(process.cwd(), OUT)}: ${(bytes / 2 ** 20).toFixed(1)} MiB\n`);
  if (bytes > LIMIT_BYTES) throw new Error(`${OUT} is ${bytes} bytes, over the 60 MiB limit`);
}

function readme(version: string): string {
  return `# inflora ${version}, one folder

Runs with Node 20 or newer and nothing else from npm: copy this folder anywhere and run

    node inflora.mjs --help
    node inflora.mjs worker --listen 0.0.0.0:50051 --token-file /var/run/inflora/token

- \`inflora.mjs\` is the command line; the other .js files beside it are the threads it starts.
- \`native/build/Release/inflora_native.node\`: the OpenBLAS/LAPACKE addon (the \`blas\` backend and the
  coordinator's linear algebra). It links the system's \`libopenblas.so.0\` and \`liblapacke.so.3\`
  (Debian/Ubuntu: \`apt-get install libopenblas0-pthread liblapacke\`). Where they are missing it does not
  load, and inflora uses wasm and its TypeScript linear algebra (\`INFLORA_NATIVE=off\` forces that).
- \`wasm/\`: the tfjs wasm backend's binaries. \`sharp/\`: sharp's addon and libvips (image decoding).
- \`modules/\`: files that bundled packages read at run time (gRPC health and reflection .proto files,
  piscina's worker, Dawn's \`dawn.node\` for the webgpu backend, which needs a Vulkan driver and
  \`libvulkan1\`). \`proto/\`, \`configs/\`, \`data/demo/\`: inflora's own.
- tfjs-node / tfjs-node-gpu are not included: backends are webgpu, blas, wasm, cpu.
`;
}

await main();
