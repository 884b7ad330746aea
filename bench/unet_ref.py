#!/usr/bin/python3
"""Plain PyTorch reference of unwedge's default n2n training step (issue 20's overhead ratio).

The same network as unwedge's default n2n U-Net (src/unwedge/nn/unet3d.cpp with n2n's options:
depth 3, 16 base channels, 2 convolutions of 3^3 per level with bias, leaky ReLU 0.1, max-pool
2^3, transposed 2^3 convolutions, 1^3 head, residual through the learnable Gaussian low-pass skip
at 0.1 cycles/voxel), the same step (swap of the halves per sample, a cube rotation keeping the
wedge and a Y mirror per sample, forward, MSE, backward, gradient-norm clipping at 1, AdamW
lr 4e-4 and weight decay 1e-4), on random [B, 1, P, P, P] halves, one thread. Times are process
CPU seconds (time.process_time) per step: the mean of `--steps` steps after a warm-up step, in
`--repeats` blocks (best and all reported). Also counts the network's forward FLOPs from the
module shapes with forward hooks (independent of bench_train's formula).

Run with Debian's python3-torch (the same LibTorch as unwedge):
    /usr/bin/python3 bench/unet_ref.py --patch 40 --batch 4 [--expect-params N]
Prints one JSON object.
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LOWPASS_RADIUS = 8  # kLowpassSkipRadius in unet3d.h


def lowpass_skip_conv(x, log_sigma_k):
    """Separable Gaussian low-pass of x [B, C, Z, Y, X]: reflect pad and a depthwise 1D
    convolution per axis (how unwedge computed its skip before 2026-12-05)."""
    r = LOWPASS_RADIUS
    sigma_s = torch.exp(-log_sigma_k.float()) / (2.0 * math.pi)  # voxels [3]
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    h = x.float()
    c = h.shape[1]
    for a in range(3):
        dim = 2 + a
        if h.shape[dim] == 1:
            continue
        w = torch.exp(-0.5 * (t / sigma_s[a]).square())
        w = w / w.sum()
        wshape = [c, 1, 1, 1, 1]
        wshape[2 + a] = 2 * r + 1
        pad = [0] * 6
        pad[2 * (2 - a)] = pad[2 * (2 - a) + 1] = r
        h = F.pad(h, pad, mode="reflect" if h.shape[dim] > r else "replicate")
        one = list(wshape)
        one[0] = 1
        h = F.conv3d(h, w.view(one).expand(wshape).contiguous(), groups=c)
    return h.to(x.dtype)


def lowpass_skip_matrix(x, log_sigma_k):
    """The same filter as one matrix product per axis with the banded [n, n] matrix that folds
    the padding in (unwedge's unet3d_lowpass_skip since 2026-12-05)."""
    r = LOWPASS_RADIUS
    sigma_s = torch.exp(-log_sigma_k.float()) / (2.0 * math.pi)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    h = x.float().contiguous()
    shape = h.shape
    for a in range(3):
        n = h.shape[2 + a]
        if n == 1:
            continue
        w = torch.exp(-0.5 * (t / sigma_s[a]).square())
        w = w / w.sum()
        j = torch.arange(n).view(n, 1) + torch.arange(-r, r + 1).view(1, -1)  # [n, 2r+1]
        if n > r:
            j = torch.where(j < 0, -j, j)
            j = torch.where(j > n - 1, 2 * (n - 1) - j, j)
        else:
            j = j.clamp(0, n - 1)
        flat = (torch.arange(n).view(n, 1) * n + j).reshape(-1)
        m = torch.zeros(n * n).index_add(0, flat, w.repeat(n)).view(n, n)
        if a == 0:
            h = torch.matmul(m, h.reshape(shape[0] * shape[1], n, -1)).view(shape)
        elif a == 1:
            h = torch.matmul(m, h)
        else:
            h = torch.matmul(h, m.t())
    return h.to(x.dtype)


def block(cin, cout):
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1),
        nn.Conv3d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1))


class UNet3d(nn.Module):
    def __init__(self, depth=3, base=16, lowpass=0.1, skip=lowpass_skip_matrix):
        super().__init__()
        self.skip = skip
        width = [base << l for l in range(depth + 1)]
        self.enc = nn.ModuleList([block(1 if l == 0 else width[l - 1], width[l]) for l in range(depth)])
        self.down = nn.ModuleList([nn.MaxPool3d(2, 2) for _ in range(depth)])
        self.bottleneck = block(width[depth - 1], width[depth])
        self.up = nn.ModuleList([nn.ConvTranspose3d(width[l + 1], width[l], 2, stride=2)
                                 for l in range(depth)])
        self.dec = nn.ModuleList([block(2 * width[l], width[l]) for l in range(depth)])
        self.head = nn.Conv3d(base, 1, 1)
        self.skip_log_sigma = nn.Parameter(torch.full((3,), math.log(lowpass)))

    def forward(self, x):
        skips = []
        h = x
        for enc, down in zip(self.enc, self.down):
            h = enc(h)
            skips.append(h)
            h = down(h)
        h = self.bottleneck(h)
        for l in reversed(range(len(self.up))):
            h = self.up[l](h)
            h = self.dec[l](torch.cat([h, skips[l]], 1))
        return self.head(h) + self.skip(x, self.skip_log_sigma)


# The 4 cube rotations that keep Y the Y axis and do not swap X and Z (symmetric +-60 wedge,
# unwedge's cube_rotations_keeping_wedge): flips of an even number of axes (z, y, x) = dims 1..3
# of a [C, Z, Y, X] sample.
ROTATIONS = [(), (1, 2), (1, 3), (2, 3)]


def augment(ts):
    """Per sample one rotation keeping the wedge and a Y mirror, the same for each tensor."""
    b = ts[0].shape[0]
    pick = torch.randint(len(ROTATIONS), (b,))
    mirror = torch.randint(2, (b,))
    out = []
    for t in ts:
        samples = []
        for i in range(b):
            s = t[i]
            if ROTATIONS[pick[i]]:
                s = s.flip(ROTATIONS[pick[i]])
            if mirror[i]:
                s = s.flip(-2)
            samples.append(s)
        out.append(torch.stack(samples))
    return out


def n2n_loss(net, a, b):
    s = torch.randint(2, (a.shape[0], 1, 1, 1, 1)).bool()
    inp = torch.where(s, b, a)
    tgt = torch.where(s, a, b)
    inp, tgt = augment([inp, tgt])
    return (net(inp) - tgt).square().mean()


def forward_flops(net, shape):
    """FLOPs (2 per multiply-add) of one forward pass, from the shapes of each convolution."""
    flops = {"conv": 0.0, "conv_transpose": 0.0, "lowpass_skip": 0.0}

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * m.kernel_size[2]
        flops["conv"] += 2.0 * out.numel() * (m.in_channels // m.groups) * k

    def tconv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * m.kernel_size[2]
        flops["conv_transpose"] += 2.0 * inp[0].numel() * m.out_channels * k

    hooks = []
    for m in net.modules():
        if isinstance(m, nn.Conv3d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.ConvTranspose3d):
            hooks.append(m.register_forward_hook(tconv_hook))
    with torch.no_grad():
        net(torch.zeros(shape))
    for h in hooks:
        h.remove()
    # The skip's three depthwise passes of 2r+1 taps (as a convolution; not in the step count).
    vox = shape[0] * shape[1] * shape[2] * shape[3] * shape[4]
    flops["lowpass_skip"] = 3 * 2.0 * (2 * LOWPASS_RADIUS + 1) * vox
    return flops


def profiler_flops(net, shape):
    """torch.profiler's own FLOP count of one forward pass, per operator (1.13 counts no conv3d:
    its total then covers only the elementwise operators, so it cannot check the conv count)."""
    from torch.profiler import profile, ProfilerActivity
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        net(torch.zeros(shape))
    return {e.key: e.flops for e in prof.key_averages() if e.flops}


def time_steps(net, opt, patch, batch, precision, steps, repeats):
    gen_a = torch.randn(batch, 1, patch, patch, patch)
    gen_b = torch.randn(batch, 1, patch, patch, patch)

    def step():
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = n2n_loss(net, gen_a, gen_b).float()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    step()  # warm-up
    blocks = []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(steps):
            step()
        blocks.append({"step_cpu_s": (time.process_time() - c0) / steps,
                       "step_s": (time.perf_counter() - w0) / steps})
    return {"best_step_cpu_s": min(b["step_cpu_s"] for b in blocks), "blocks": blocks}


def conv_probe(spec, precision):
    """GFLOP per CPU-second of one 3^3 convolution C -> C on [B, C, S, S, S], forward and
    forward+backward (input, weight and bias gradients), best of 2 after a warm-up."""
    c, s, b = (int(v) for v in spec.split(","))
    x = torch.randn(b, c, s, s, s, requires_grad=True)
    w = (torch.randn(c, c, 3, 3, 3) * 0.05).requires_grad_(True)
    bias = torch.zeros(c, requires_grad=True)
    flop = 2.0 * 27 * c * c * b * s ** 3
    f = fb = 1e30
    for i in range(3):
        c0 = time.process_time()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            F.conv3d(x, w, bias, padding=1)
        c1 = time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            y = F.conv3d(x, w, bias, padding=1)
        y.float().sum().backward()
        c2 = time.process_time()
        x.grad = w.grad = bias.grad = None
        if i:
            f, fb = min(f, c1 - c0), min(fb, c2 - c1)
    return {"channels": c, "size": s, "batch": b, "precision": precision,
            "fwd_gflop_per_cpu_s": flop / f / 1e9, "fwd_bwd_gflop_per_cpu_s": 3 * flop / fb / 1e9}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch", type=int, default=40)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks (best reported)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--skip", choices=("matrix", "conv"), default="matrix",
                    help="how the low-pass skip is computed (unwedge's way since 2026-12-05, or before)")
    ap.add_argument("--conv", action="append", default=[], metavar="C,S,B",
                    help="instead of the step: time one 3^3 convolution C -> C on [B, C, S^3] "
                         "(repeatable)")
    ap.add_argument("--expect-params", type=int, default=0,
                    help="fail unless the network has exactly this many parameters")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.conv:
        print(json.dumps([conv_probe(c, p) for p in args.precision.split(",") for c in args.conv],
                         indent=1))
        return
    net = UNet3d(skip=lowpass_skip_matrix if args.skip == "matrix" else lowpass_skip_conv)
    params = sum(p.numel() for p in net.parameters())
    if args.expect_params and params != args.expect_params:
        sys.exit("unet_ref.py: the reference network has %d parameters, unwedge's %d"
                 % (params, args.expect_params))
    shape = (args.batch, 1, args.patch, args.patch, args.patch)
    fl = forward_flops(net, shape)
    fwd = fl["conv"] + fl["conv_transpose"]
    out = {"bench": "unet_ref", "torch": torch.__version__, "threads": torch.get_num_threads(),
           "patch": args.patch, "batch": args.batch, "skip": args.skip, "parameters": params,
           "forward_flops_hooks": fl, "step_flops_hooks": 3.0 * fwd,
           "profiler_forward_flops": profiler_flops(net, shape)}
    opt = torch.optim.AdamW(net.parameters(), lr=4e-4, weight_decay=1e-4)
    for precision in args.precision.split(","):
        r = time_steps(net, opt, args.patch, args.batch, precision, args.steps, args.repeats)
        r["network_gflop_per_cpu_s"] = out["step_flops_hooks"] / r["best_step_cpu_s"] / 1e9
        out["step_" + precision] = r
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
