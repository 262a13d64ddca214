"""timm side of scripts/timm_export_check.ts: load the merged weights strictly into timm's
VisionTransformer and compare its logits and predictions with the run's."""
import json
import struct
import sys

import timm
import torch
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer

merged_path, inputs_path = sys.argv[1], sys.argv[2]
with open(merged_path, "rb") as f:
    meta = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]
state = load_file(merged_path)
classes = state["head.weight"].shape[0]
model = VisionTransformer(
    img_size=int(meta["img_size"]),
    patch_size=int(meta["patch_size"]),
    in_chans=int(meta["in_chans"]),
    embed_dim=int(meta["embed_dim"]),
    depth=int(meta["depth"]),
    num_heads=int(meta["num_heads"]),
    mlp_ratio=float(meta["mlp_ratio"]),
    num_classes=classes,
)
model.load_state_dict(state, strict=True)  # raises on any missing, unexpected or mis-shaped key
model.eval()
inputs = load_file(inputs_path)
with torch.no_grad():
    logits = model(inputs["images"])
run_logits = inputs["logits"].reshape(logits.shape)
worst = (logits - run_logits).abs().max().item()
scale = run_logits.abs().max().item()
agree = (logits.argmax(dim=1) == inputs["pred"].reshape(-1)).float().mean().item()
print(
    f"timm {timm.__version__}, torch {torch.__version__}: strict load of {len(state)} tensors OK; "
    f"{logits.shape[0]} test images, {classes} classes; max |logit diff| {worst:.2e} (max |logit| {scale:.2f}); "
    f"prediction agreement {100 * agree:.2f} %"
)
sys.exit(0 if agree == 1.0 and worst < 1e-4 * max(1.0, scale) else 1)
