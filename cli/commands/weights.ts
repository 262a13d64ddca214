import { Argument, type Command } from "commander";
import type { ForeignCheckpoint } from "../../worker/model/load_weights.js";
import { describePthLayouts, PTH_LAYOUTS } from "../../worker/model/pth_to_timm.js";
import { FETCH_PRESETS } from "../weights_presets.js";
import { positiveInt } from "./train.js";

const collect = (v: string, prev: string[]) => [...prev, v];

/** The layout lines of a .pth: which state_dict was read, which others the file has, what was left out. */
function describePth(p: NonNullable<ForeignCheckpoint["pth"]>): string {
  const others = p.found.filter((id) => id !== p.layout.id);
  const left = p.ignored.length === 0 ? "" : `left out: ${p.ignored.join(", ")}\n`;
  return (
    `layout ${p.layout.id}: ${p.layout.description}${others.length > 0 ? ` (the file also has: ${others.join(", ")})` : ""}\n` +
    left
  );
}

function describeDims(d: import("../weights_tools.js").VitDims): string {
  const v = (x: number | undefined) => (x === undefined ? "?" : String(x));
  return (
    `img_size ${v(d.imgSize)}, patch_size ${v(d.patchSize)}, in_chans ${v(d.inChans)}, embed_dim ${v(d.embedDim)}, ` +
    `depth ${d.depth}, num_heads ${v(d.numHeads)}${d.numHeadsFrom ? ` (from the ${d.numHeadsFrom})` : ""}, ` +
    `mlp ${v(d.mlpHidden)}, classes ${v(d.numClasses)}${d.preLogits ? ", pre_logits" : ""}`
  );
}

export function registerWeights(program: Command): void {
  const weights = program
    .command("weights")
    .description(
      "Base ViT weights: import a Google .npz or a PyTorch .pth, inspect a file, fetch the ImageNet-21k checkpoints",
    )
    .addHelpText(
      "after",
      `
Examples:
  $ inflora weights fetch vit_base_patch16_224_in21k --out weights --sha256 <hex>
  $ inflora weights import weights/vit_base_patch16_224_in21k.npz --out weights/vit_base_patch16_224_in21k.safetensors
  $ inflora weights inspect weights/vit_base_patch16_224_in21k.safetensors`,
    );

  weights
    .command("import")
    .description("Convert a Google ViT .npz (JAX names) or a PyTorch .pth to a .safetensors with timm names")
    .argument("<file>", "the .npz or .pth checkpoint")
    .requiredOption("--out <file>", "the .safetensors to write")
    .option(
      "--layout <id>",
      `.pth: the state_dict to take (${PTH_LAYOUTS.map((l) => l.id).join(", ")}); default: the first found`,
    )
    .option(
      "--allow-global <name>",
      ".pth: read this pickle global as inert data instead of refusing it (repeatable)",
      collect,
      [],
    )
    .option("--num-heads <n>", "attention heads, when the width is no timm preset's", positiveInt)
    .addHelpText(
      "after",
      `
An .npz goes through the one JAX→timm conversion table (worker/model/jax_to_timm.ts); a .pth (torch.save's
zip format) is read without Python by a restricted unpickler that builds tensors and plain containers and
refuses any other global, naming it, and its state_dict is found through the layout table
(worker/model/pth_to_timm.ts):
${describePthLayouts()
  .map((l) => `  ${l}`)
  .join("\n")}
The model's tensors are checked for shape and finite values. The metadata records the source file name,
its SHA-256, the layout and the model dimensions. Configs may point at either file: both give
bit-identical runs.

Examples:
  $ inflora weights import weights/vit_base_patch16_224_in21k.npz --out weights/vit_base_patch16_224_in21k.safetensors
  $ inflora weights import dino_vitbase16_pretrain_full_checkpoint.pth --out weights/dino_vitb16.safetensors --allow-global argparse.Namespace
  $ inflora weights import test/fixtures/reference/tiny_vit.npz --out /tmp/tiny_vit.safetensors`,
    )
    .action(
      async (file: string, o: { out: string; layout?: string; allowGlobal: string[]; numHeads?: number }) => {
        const { importWeights } = await import("../weights_tools.js");
        const s = await importWeights(file, o.out, {
          layout: o.layout,
          allowGlobals: o.allowGlobal,
          numHeads: o.numHeads,
        });
        process.stdout.write(
          `${s.out}: ${s.tensors} tensors, ${s.parameters.toLocaleString("en-US")} parameters\n` +
            `${describeDims(s.dims)}\n${s.pth === undefined ? "" : describePth(s.pth)}source ${file} sha256 ${s.sourceSha256}\n`,
        );
      },
    );

  weights
    .command("inspect")
    .description("Names, dtypes, shapes, parameter count and ViT dimensions of a .safetensors, .npz or .pth")
    .argument("<file>", "a .safetensors (only its header is read), an .npz or a .pth")
    .option("--json", "print JSON", false)
    .option("--layout <id>", ".pth: the state_dict to show; default: the first found")
    .option("--allow-global <name>", ".pth: read this pickle global as inert data (repeatable)", collect, [])
    .addHelpText(
      "after",
      `
Examples:
  $ inflora weights inspect weights/vit_base_patch16_224_in21k.npz
  $ inflora weights inspect dino_vitbase16_pretrain.pth
  $ inflora weights inspect runs/demo/backbone/vit_demo.safetensors --json`,
    )
    .action(async (file: string, o: { json: boolean; layout?: string; allowGlobal: string[] }) => {
      const { inspectWeights } = await import("../weights_tools.js");
      const info = await inspectWeights(file, { layout: o.layout, allowGlobals: o.allowGlobal });
      if (o.json) {
        process.stdout.write(`${JSON.stringify(info, null, 1)}\n`);
        return;
      }
      const width = Math.max(...info.tensors.map((t) => t.name.length), 4);
      const lines = [
        `${info.file}: ${info.format}, ${info.bytes.toLocaleString("en-US")} bytes`,
        ...(info.pth === undefined ? [] : [describePth(info.pth).trimEnd()]),
        "",
        `${"name".padEnd(width)}  dtype  shape`,
        ...info.tensors.map((t) => `${t.name.padEnd(width)}  ${t.dtype.padEnd(5)}  [${t.shape.join(", ")}]`),
        "",
        `${info.tensors.length} tensors, ${info.parameters.toLocaleString("en-US")} parameters`,
        `ViT: ${describeDims(info.dims)}`,
      ];
      for (const [k, v] of Object.entries(info.metadata)) lines.push(`metadata ${k}: ${v}`);
      process.stdout.write(`${lines.join("\n")}\n`);
    });

  weights
    .command("fetch")
    .description("Download a public augreg ImageNet-21k ViT .npz and check its SHA-256")
    .addArgument(
      new Argument("<model>", "ImageNet-21k augreg checkpoint").choices(Object.keys(FETCH_PRESETS)),
    )
    .requiredOption("--out <dir>", "folder for MODEL.npz")
    .option("--sha256 <hex>", "expected SHA-256 (overrides the built-in table)")
    .option("--allow-unverified", "accept a file whose digest is not known (prints it)", false)
    .option("--base-url <url>", "host to download from instead of https://storage.googleapis.com/vit_models")
    .addHelpText(
      "after",
      `
The file is streamed to a temporary name in --out and renamed to MODEL.npz only when its digest matches;
on any failure nothing is left behind. The built-in table has no digests yet (Google publishes none, and
none has been verified here): pass --sha256 from a source you trust, or --allow-unverified.

Examples:
  $ inflora weights fetch vit_base_patch16_224_in21k --out weights --sha256 <hex>
  $ inflora weights fetch vit_tiny_patch16_224_in21k --out weights --allow-unverified
  $ inflora weights fetch vit_base_patch16_224_in21k --out weights --base-url http://mirror.local/vit_models --sha256 <hex>`,
    )
    .action(
      async (
        model: string,
        o: { out: string; sha256?: string; allowUnverified: boolean; baseUrl?: string },
      ) => {
        const { fetchWeights } = await import("../weights_tools.js");
        const { createProgress } = await import("../../demo/progress.js");
        const progress = createProgress();
        let bar: ReturnType<typeof progress.start> | undefined;
        const mb = (b: number) => (b / 2 ** 20).toFixed(1);
        const r = await fetchWeights({
          preset: model,
          outDir: o.out,
          baseUrl: o.baseUrl,
          sha256: o.sha256,
          allowUnverified: o.allowUnverified,
          onProgress: (bytes, total) => {
            bar ??= progress.start(`download ${model}`, total ?? 0);
            bar.update(
              total === undefined ? 0 : bytes,
              `${mb(bytes)} MiB${total === undefined ? "" : ` of ${mb(total)} MiB`}`,
            );
          },
        });
        bar?.stop(`${mb(r.bytes)} MiB`);
        process.stdout.write(
          r.alreadyPresent
            ? `${r.file}: already present with the expected sha256 ${r.sha256}\n`
            : `${r.file}: ${r.bytes.toLocaleString("en-US")} bytes from ${r.url}\nsha256 ${r.sha256} ` +
                `(${r.verified ? "verified" : "NOT verified: no expected digest was given"})\n`,
        );
      },
    );
}
