import { type Command, InvalidArgumentError } from "commander";

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a task number (0, 1, …)");
  return n;
}

export function registerExport(program: Command): void {
  program
    .command("export")
    .description(
      "Fold a run's adapters into qkv and join its heads: one plain timm VisionTransformer checkpoint (.safetensors)",
    )
    .requiredOption("--run <dir>", "run directory written by inflora train")
    .option(
      "--task <t>",
      "export the state after task t (0-based; default: the last finished task)",
      nonNegativeInt,
    )
    .requiredOption("--out <file>", "merged weights (.safetensors)")
    .addHelpText(
      "after",
      `
The file holds exactly the tensors of timm's VisionTransformer with num_classes = the classes seen up to
task t and global_pool='token'; its metadata records the model dimensions and the constructor call. Outputs
are in the run's label order (metadata class_order / class_names). In PyTorch:

  model = timm.models.vision_transformer.VisionTransformer(img_size=224, patch_size=16, embed_dim=768,
      depth=12, num_heads=12, num_classes=100, global_pool='token')
  model.load_state_dict(safetensors.torch.load_file("merged.safetensors"), strict=True)

Examples:
  $ inflora export --run runs/c100 --out c100_merged.safetensors
  $ inflora export --run runs/demo/inflora --task 2 --out after_task2.safetensors`,
    )
    .action(async (o: { run: string; task?: number; out: string }) => {
      const { exportMerged } = await import("../export_merged.js");
      const s = await exportMerged(o);
      process.stdout.write(
        `${o.out}: state after task ${s.task}, ${s.classes} classes, ${s.tensors} tensors, ` +
          `${s.parameters.toLocaleString("en-US")} parameters\ntimm: ${s.timm}\n`,
      );
    });
}
