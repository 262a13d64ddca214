#!/usr/bin/env python3
"""PyTorch side of `npm run bench:compare` (bench/compare.ts starts it; not run on its own).

  compare_torch.py probe
      prints the torch/numpy versions (exit 1 without torch)
  compare_torch.py step '<json job>'
      the InfLoRA step of bench/step_workloads.ts in PyTorch: a frozen timm-layout ViT (random weights),
      low-rank adapters on k and v (B designed and frozen, A trainable, rank r) and one head; workloads
      "train" (forward + backward of the summed cross-entropy, gradients of A_k, A_v and the head only),
      "forward" (no grad, logits) and "covariance" (no grad, per block sum of h^T h of the norm1 output,
      accumulated in float64), in the order given, each after one untimed warm-up step
  compare_torch.py linalg '<json job>'
      the reference's central linear algebra with numpy (LAPACK): per layer the design of B
      (SVD of the projected covariance) and update_DualGPM (SVDs of the covariance), for two tasks, on
      the covariances bench/compare.ts builds from the same counter-based random numbers

Each result is one line on stdout, prefixed with "@@compare-torch " and JSON.
"""
import json
import math
import resource
import sys
import time

TAG = "@@compare-torch "


def emit(obj):
    sys.stdout.write(TAG + json.dumps(obj) + "\n")
    sys.stdout.flush()


def peak_rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probe():
    import numpy
    import torch

    emit({"torch": torch.__version__, "numpy": numpy.__version__, "threads": torch.get_num_threads()})


# ----------------------------------------------------------------------------------------------------
# The model


def build_model(job):
    import torch
    from torch import nn

    D, H, M, r = job["embedDim"], job["numHeads"], job["mlpHidden"], job["rank"]
    Dh = D // H
    scale = Dh ** -0.5

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(D, eps=1e-6)
            self.qkv = nn.Linear(D, 3 * D)
            self.proj = nn.Linear(D, D)
            self.norm2 = nn.LayerNorm(D, eps=1e-6)
            self.fc1 = nn.Linear(D, M)
            self.fc2 = nn.Linear(M, D)
            self.act = nn.GELU()
            # Paper notation: B [r, D] designed and frozen, A [D, r] trained (reference: lora_A / lora_B).
            self.B = nn.Linear(D, r, bias=False)
            self.A_k = nn.Linear(r, D, bias=False)
            self.A_v = nn.Linear(r, D, bias=False)

        def forward(self, x, collect=None):
            n, t, _ = x.shape
            h = self.norm1(x)
            if collect is not None:
                collect(h)
            q, k, v = self.qkv(h).chunk(3, dim=-1)
            z = self.B(h)
            k = k + self.A_k(z)
            v = v + self.A_v(z)
            q = q.reshape(n, t, H, Dh).transpose(1, 2)
            k = k.reshape(n, t, H, Dh).transpose(1, 2)
            v = v.reshape(n, t, H, Dh).transpose(1, 2)
            attn = ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            o = (attn @ v).transpose(1, 2).reshape(n, t, D)
            x = x + self.proj(o)
            return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    class Vit(nn.Module):
        def __init__(self):
            super().__init__()
            p, c = job["patchSize"], job["inChans"]
            grid = job["imgSize"] // p
            self.patch = nn.Conv2d(c, D, kernel_size=p, stride=p)
            self.cls = nn.Parameter(torch.zeros(1, 1, D))
            self.pos = nn.Parameter(torch.zeros(1, grid * grid + 1, D))
            self.blocks = nn.ModuleList([Block() for _ in range(job["depth"])])
            self.norm = nn.LayerNorm(D, eps=1e-6)
            self.head = nn.Linear(D, job["classes"])

        def features(self, images, collect=None):
            x = self.patch(images).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
            for i, blk in enumerate(self.blocks):
                x = blk(x, None if collect is None else (lambda h, i=i: collect(i, h)))
            return self.norm(x[:, 0])

        def forward(self, images):
            return self.head(self.features(images))

    torch.manual_seed(1000)
    model = Vit()
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if "norm" in name:
                prm.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                prm.normal_(0, 0.02)
    model.eval()  # no dropout anywhere; as the reference trains
    for name, prm in model.named_parameters():
        prm.requires_grad_(name.endswith(("A_k.weight", "A_v.weight")) or name.startswith("head."))
    return model


def step_job(job):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(job["threads"])
    model = build_model(job)
    D, depth = job["embedDim"], job["depth"]
    g = torch.Generator().manual_seed(9000)
    images = torch.rand(job["batch"], job["inChans"], job["imgSize"], job["imgSize"], generator=g)
    targets = torch.randint(0, job["classes"], (job["batch"],), generator=g)
    setup_rss = peak_rss_mib()

    def train():
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), targets, reduction="sum")
        loss.backward()
        return loss.item()

    def forward():
        with torch.no_grad():
            return model(images)[0, 0].item()

    def covariance():
        acc = [torch.zeros(D, D, dtype=torch.float64) for _ in range(depth)]

        def collect(i, h):
            h2 = h.reshape(-1, D)
            acc[i] += (h2.t() @ h2).double()

        with torch.no_grad():
            model.features(images, collect)
        return acc[0][0, 0].item()

    steps = {"train": train, "forward": forward, "covariance": covariance}
    for workload in job["workloads"]:
        step = steps[workload]
        w0 = time.perf_counter()
        step()
        warm = time.perf_counter() - w0
        times = []
        c0 = time.process_time()
        start = time.perf_counter()
        while True:
            a = time.perf_counter()
            value = step()
            times.append(time.perf_counter() - a)
            elapsed = time.perf_counter() - start
            if not math.isfinite(value):
                raise RuntimeError(f"{workload}: non-finite result {value}")
            if len(times) >= job["maxSteps"] or (len(times) >= job["minSteps"] and elapsed >= job["minSeconds"]):
                break
        wall = time.perf_counter() - start
        emit(
            {
                "workload": workload,
                "imagesPerSec": len(times) * job["batch"] / wall,
                "timedSteps": len(times),
                "timedSeconds": wall,
                "timedCpuSeconds": time.process_time() - c0,
                "stepSeconds": times,
                "warmupSeconds": warm,
                "peakRssMiB": peak_rss_mib(),
                "setupRssMiB": setup_rss,
            }
        )


# ----------------------------------------------------------------------------------------------------
# Central linear algebra (numpy, as the reference does it)


def counter_normals(seed, n):
    """Standard normals from mulberry32 used as a counter (state seed + (i+1)·0x6d2b79f5), Box–Muller on
    consecutive pairs — the same numbers bench/compare.ts draws."""
    import numpy as np

    count = n + (n & 1)
    i = np.arange(1, count + 1, dtype=np.uint64)
    a = (np.uint64(seed) + i * np.uint64(0x6D2B79F5)) & np.uint64(0xFFFFFFFF)
    a = a.astype(np.uint32)
    with np.errstate(over="ignore"):
        t = a.copy()
        t = (t ^ (t >> np.uint32(15))) * (t | np.uint32(1))
        t = t ^ (t + (t ^ (t >> np.uint32(7))) * (t | np.uint32(61)))
        u = ((t ^ (t >> np.uint32(14))).astype(np.float64)) / 4294967296.0
    u1, u2 = u[0::2], u[1::2]
    r = np.sqrt(-2.0 * np.log(1.0 - u1))
    phi = 2.0 * np.pi * u2
    out = np.empty(count)
    out[0::2] = r * np.cos(phi)
    out[1::2] = r * np.sin(phi)
    return out[:n]


def covariance_matrix(seed, D, decay):
    import numpy as np

    x = counter_normals(seed, D * D).reshape(D, D)
    x *= (10.0 ** (-np.arange(D) / decay) / math.sqrt(D))[None, :]
    return x @ x.T


def linalg_job(job):
    import numpy as np

    D, depth, rank, decay = job["dim"], job["depth"], job["rank"], job["decay"]
    covs = [[covariance_matrix(job["seeds"][p] + i, D, decay) for i in range(depth)] for p in range(4)]

    def design(c, memory):
        if memory is not None:
            basis, kind = memory
            m = basis @ basis.T
            c = c - m @ c if kind == "remove" else m @ c
        u = np.linalg.svd(c, full_matrices=False)[0]
        return u[:, :rank].T / math.sqrt(3)

    def update(memory, c, eps):
        # update_DualGPM of the reference (with the documented retain fix), on the covariance itself.
        if memory is None:
            u, s, _ = np.linalg.svd(c, full_matrices=False)
            ratio = np.cumsum(s**2) / np.sum(s**2)
            r = int(np.sum(ratio < eps))
            k = max(r, 1)
            if r < D / 2:
                memory = (u[:, :k], "remove")
            else:
                memory = (u[:, k:], "retain")
        else:
            basis, kind = memory
            total = np.sum(np.linalg.svd(c, compute_uv=False) ** 2)
            m = basis @ basis.T
            if kind == "remove":
                u, s, _ = np.linalg.svd(c - m @ c, full_matrices=False)
                acc = (total - np.sum(s**2)) / total
                r = 0
                for v in s**2:
                    if acc >= eps:
                        break
                    acc += v / total
                    r += 1
                if r > 0:
                    memory = (np.hstack([basis, u[:, :r]])[:, :D], "remove")
            else:
                u, s, _ = np.linalg.svd(m @ c, full_matrices=False)
                acc = np.sum(s**2) / total
                r = 0
                for v in s**2:
                    if acc < 1 - eps:
                        break
                    acc -= v / total
                    r += 1
                if r > 0:
                    ur = u[:, :r]
                    feature = basis - ur @ (ur.T @ basis)
                    memory = (np.linalg.svd(feature)[0][:, : max(basis.shape[1] - r, 0)], "retain")
        basis, kind = memory
        if kind == "remove" and basis.shape[1] > D / 2:
            memory = (np.linalg.svd(basis)[0][:, basis.shape[1] :], "retain")
        return memory

    memories = [None] * depth
    tasks = []
    for t in range(2):
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(depth):
            design(covs[2 * t][i], memories[i])
        w1, c1 = time.perf_counter(), time.process_time()
        memories = [update(memories[i], covs[2 * t + 1][i], job["thresholds"][t]) for i in range(depth)]
        w2, c2 = time.perf_counter(), time.process_time()
        tasks.append(
            {
                "designSeconds": w1 - w0,
                "dualgpmSeconds": w2 - w1,
                "cpuSeconds": c2 - c0,
                "widths": [m[0].shape[1] for m in memories],
                "types": [m[1] for m in memories],
            }
        )
    emit({"tasks": tasks})


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("probe", "step", "linalg"):
        sys.stderr.write(__doc__)
        sys.exit(2)
    try:
        if sys.argv[1] == "probe":
            probe()
        elif sys.argv[1] == "step":
            step_job(json.loads(sys.argv[2]))
        else:
            linalg_job(json.loads(sys.argv[2]))
    except ImportError as err:
        emit({"error": f"missing Python module: {err}"})
        sys.exit(1)


if __name__ == "__main__":
    main()
