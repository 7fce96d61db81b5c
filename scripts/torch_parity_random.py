"""Random PyTorch parity cases: a sweep over geometries the public cases do not cover.

Writes `--per-layer` random cases of every layer kind of tests/parity/README.md into OUT, in
exactly that format (float64 safetensors, `<layer>_<NNN>.safetensors`, the JSON `config` in
the metadata plus `layer`, `generator`, `torch_version` and, for batch norm and the
ResNet/torchvision-Inception blocks, `mode`). No index.json is written, so the parity runner
just runs every file in the folder:

    /root/torchenv/bin/python scripts/torch_parity_random.py /tmp/parity-random --seed 1 --per-layer 30
    cargo run --release --example parity -- /tmp/parity-random

What it checks: every forward output, input gradient, parameter gradient, running-stat
update and optimizer step of convnet against PyTorch (CPU, float64, deterministic) on random
configurations chosen to reach the geometry-specific kernels: Winograd 3x3 stride-1 convs,
windows that cover the whole input ("dense"), 1x1 identity convs, grouped and depthwise
convs, stride-2 and large-stride convs, dilation, short output rows ("wide" layout), large
planes (56x56, batch 8) that are row-blocked, small planes batched per GEMM; max pooling
with dilation, padding up to k/2 and ceil_mode (inputs are tie-free permutations); average
pooling with count_include_pad and ceil_mode edge windows; adaptive pooling with O > L;
LRN with odd and even sizes; batch norm in train/eval, with/without affine and running
stats, momentum 0..1; losses with large logits and label smoothing; the ResNet blocks with
stride, downsample, groups, base_width and dilation; both Inception variants; SGD (momentum,
dampening, nesterov, weight decay), Adam and AdamW.

`--extras` writes, instead, configurations the README format does not list: the composite
blocks with other batch-norm eps and momentum (None too, torchvision's `norm_layer`), maximize and
amsgrad optimizers (with AMSGrad's `max_exp_avg_sq` state after each step), a non-null
avg-pool divisor_override, batch-norm momentum=None (PyTorch's cumulative average), flatten
with other dims and 2-D/3-D inputs, 2-D/3-D concat and residual_add, 3-D softmax,
log_softmax and LRN. Put them in a folder of their own:

    /root/torchenv/bin/python scripts/torch_parity_random.py /tmp/parity-extras --seed 1 --per-layer 10 --extras

Run the runner with RAYON_NUM_THREADS=1, 2, 3 to vary how the batch is split into tasks.
Seeds are per case (`seed·1e6 + 1000·kind + index`, stored in `config.gen.seed`), so a failing
case can be regenerated alone with `--only KIND`.
"""
import argparse
import importlib
import json
import math
import random
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

GENERATOR = "scripts/torch_parity_random.py"
DT = torch.float64


class Ctx:
    """One case's random sources: `r` (Python) for the config, `g` (torch) for tensors."""

    def __init__(self, seed):
        self.seed = seed
        self.r = random.Random(seed)
        self.g = torch.Generator().manual_seed(seed)

    def randn(self, *shape, scale=1.0):
        return torch.randn(shape, generator=self.g, dtype=DT) * scale

    def uniform(self, lo, hi, *shape):
        return torch.rand(shape, generator=self.g, dtype=DT) * (hi - lo) + lo

    def away_from_zero(self, *shape, scale=2.0, margin=1e-3):
        """N(0, scale²) values pushed at least `margin` away from 0 (ReLU kinks)."""
        x = self.randn(*shape, scale=scale)
        return torch.where(x >= 0, x + margin, x - margin)

    def tie_free(self, *shape):
        """A random permutation of evenly spaced values: no ties, spacing >= 4e-6 · numel."""
        n = math.prod(shape)
        perm = torch.randperm(n, generator=self.g).to(DT)
        return ((perm - n / 2) * (4.0 / max(n, 1))).reshape(shape)


def grad_of(out, inputs, ctx):
    """A random upstream gradient and d(sum(g·out))/d(inputs)."""
    go = ctx.randn(*out.shape)
    grads = torch.autograd.grad(out, inputs, go, allow_unused=True)
    return go, [torch.zeros_like(i) if g is None else g for i, g in zip(inputs, grads)]


def weighted_case(m, x, bias, ctx):
    """The tensors of a layer with a weight (and maybe a bias): input, parameters, output, a
    random upstream gradient and every gradient."""
    y = m(x)
    params = [x, m.weight] + ([m.bias] if bias else [])
    go, grads = grad_of(y, params, ctx)
    t = {"input": x, "weight": m.weight, "output": y, "grad_output": go,
         "grad_input": grads[0], "grad_weight": grads[1]}
    if bias:
        t["bias"] = m.bias
        t["grad_bias"] = grads[2]
    return t


def pool_out(L, k, s, p, d, ceil):
    """PyTorch's pooling output size (README: output size, ceil_mode rule)."""
    span = L + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= L + p:
        o -= 1
    return o


# ---------------------------------------------------------------- single layers


def conv2d(c):
    r = c.r
    kind = r.choice(["random", "random", "winograd", "winograd", "dense", "pointwise",
                     "depthwise", "stride2", "wide", "batched", "large", "blocked", "dilated"])
    n = r.randint(1, 9)
    groups = 1
    kh, kw = r.randint(1, 7), r.randint(1, 7)
    sh, sw = r.randint(1, 4), r.randint(1, 4)
    dh, dw = 1, 1
    h, w = r.randint(1, 40), r.randint(1, 40)
    cin, cout = r.randint(1, 24), r.randint(1, 24)
    ph, pw = r.randint(0, kh // 2), r.randint(0, kw // 2)
    if kind == "random":
        dh, dw = r.choice([1, 1, 2, 3]), r.choice([1, 1, 2, 3])
        if r.random() < 0.3:
            g = r.choice([2, 3, 4])
            groups = g
            cin, cout = g * r.randint(1, 6), g * r.randint(1, 6)
        if r.random() < 0.2:
            ph, pw = r.randint(0, kh + 2), r.randint(0, kw + 2)
    elif kind == "winograd":  # 3x3 stride 1, >= 16 channels each way
        kh = kw = 3
        sh = sw = 1
        ph, pw = r.choice([0, 1, 1, 2, 3]), r.choice([0, 1, 1, 2])
        h, w = r.randint(1, 50), r.randint(1, 50)
        cin, cout = r.randint(14, 40), r.randint(14, 40)
        if r.random() < 0.15:
            groups = 2
            cin, cout = 2 * r.randint(8, 20), 2 * r.randint(8, 20)
    elif kind == "dense":  # the window covers the whole unpadded input
        h, w = r.randint(1, 7), r.randint(1, 7)
        kh, kw = h, w
        ph = pw = 0
        cin, cout = r.randint(1, 40), r.randint(1, 40)
        if r.random() < 0.3:
            groups = r.choice([2, 3])
            cin, cout = groups * r.randint(1, 8), groups * r.randint(1, 8)
    elif kind == "pointwise":
        kh = kw = 1
        ph = pw = 0
        sh, sw = r.choice([1, 1, 1, 2]), r.choice([1, 1, 1, 2])
        cin, cout = r.randint(1, 40), r.randint(1, 40)
        h, w = r.randint(1, 60), r.randint(1, 40)
        if r.random() < 0.2:
            groups = r.choice([2, 4])
            cin, cout = groups * r.randint(1, 8), groups * r.randint(1, 8)
    elif kind == "depthwise":
        cin = r.randint(1, 32)
        groups = cin
        cout = cin * r.choice([1, 1, 2])
        kh = kw = r.choice([3, 3, 5, 7])
        ph, pw = kh // 2, kw // 2
        sh = sw = r.choice([1, 2])
        h, w = r.randint(1, 40), r.randint(1, 40)
    elif kind == "stride2":
        sh = sw = 2
        if r.random() < 0.3:
            sh = r.choice([1, 3])
        kh, kw = r.choice([(1, 1), (2, 2), (3, 3), (3, 3), (5, 5), (7, 7), (3, 1), (1, 3)])
        ph, pw = kh // 2, kw // 2
        h, w = r.randint(1, 60), r.randint(1, 60)
    elif kind == "wide":  # stride 1, short output rows, few output channels
        w = r.randint(1, 20)
        h = r.randint(1, 40)
        cout = r.randint(1, 32)
        cin = r.randint(1, 32)
        kh, kw = r.randint(1, 5), r.randint(1, 5)
        ph, pw = r.randint(0, kh), r.randint(0, kw)
        sh = sw = 1
        dh, dw = r.choice([1, 1, 2]), r.choice([1, 1, 2])
    elif kind == "batched":  # small planes, > 32 output channels: several images per GEMM
        n = r.randint(2, 9)
        h, w = r.randint(1, 16), r.randint(1, 16)
        cin, cout = r.randint(1, 24), r.randint(33, 48)
        sh, sw = r.choice([1, 1, 2]), r.choice([1, 1, 2])
    elif kind == "large":
        n = r.choice([2, 4, 8])
        h = w = r.choice([28, 56])
        if r.random() < 0.3:
            w = r.randint(20, 70)
        cin, cout = r.randint(16, 32), r.randint(16, 40)
        kh = kw = r.choice([1, 3, 3, 5])
        ph, pw = kh // 2, kw // 2
        sh = sw = r.choice([1, 1, 2])
    elif kind == "blocked":  # one image's columns exceed a block: row blocks
        n = r.randint(1, 3)
        h, w = r.randint(40, 60), r.randint(40, 70)
        cin, cout = r.randint(24, 40), r.randint(4, 40)
        kh, kw = r.choice([(5, 5), (7, 7), (5, 3), (3, 7)])
        ph, pw = kh // 2, kw // 2
        sh, sw = 1, r.choice([1, 1, 2])
    elif kind == "dilated":
        dh, dw = r.randint(1, 3), r.randint(1, 3)
        kh, kw = r.randint(2, 4), r.randint(2, 4)
        ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
        sh, sw = r.randint(1, 2), r.randint(1, 2)
    # make the output non-empty
    while h + 2 * ph - dh * (kh - 1) - 1 < 0:
        h += 1
    while w + 2 * pw - dw * (kw - 1) - 1 < 0:
        w += 1
    bias = r.random() < 0.6
    m = nn.Conv2d(cin, cout, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups, bias, dtype=DT)
    x = c.randn(n, cin, h, w).requires_grad_(True)
    with torch.no_grad():
        m.weight.copy_(c.randn(*m.weight.shape, scale=1 / math.sqrt(cin // groups * kh * kw)))
        if bias:
            m.bias.copy_(c.randn(cout))
    t = weighted_case(m, x, bias, c)
    cfg = dict(in_channels=cin, out_channels=cout, kernel_size=[kh, kw], stride=[sh, sw],
               padding=[ph, pw], dilation=[dh, dw], groups=groups, bias=bias,
               padding_mode="zeros", input_shape=[n, cin, h, w], gen={"seed": c.seed, "kind": kind})
    return cfg, t


def pool_geometry(c, dilation):
    """A pooling geometry PyTorch accepts: p <= k/2 and a non-empty output."""
    r = c.r
    while True:
        if r.random() < 0.25:  # classic 2x2/2 and 3x3/2 (the tiled max-pool paths)
            k = r.choice([2, 3])
            kh = kw = k
            sh = sw = r.choice([1, 2, 2])
        else:
            kh, kw = r.randint(1, 7), r.randint(1, 7)
            sh, sw = r.randint(1, 4), r.randint(1, 4)
        ph, pw = r.randint(0, kh // 2), r.randint(0, kw // 2)
        dh, dw = (r.choice([1, 1, 2, 3]), r.choice([1, 1, 2, 3])) if dilation else (1, 1)
        ceil = r.random() < 0.5
        if r.random() < 0.3:
            h, w = r.randint(1, 60), r.randint(1, 60)
        else:
            h, w = r.randint(1, 20), r.randint(1, 20)
        if r.random() < 0.1:  # window equals the input
            h, w = kh, kw
            ph = pw = 0
        oh = pool_out(h, kh, sh, ph, dh, ceil)
        ow = pool_out(w, kw, sw, pw, dw, ceil)
        if oh >= 1 and ow >= 1:
            return (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil, (h, w)


def pool_input_shape(c, hw):
    r = c.r
    big = hw[0] * hw[1] > 900
    n = r.randint(1, 4 if big else 9)
    ch = r.randint(1, 16 if big else 40)
    return [n, ch, hw[0], hw[1]]


def max_pool2d(c):
    k, s, p, d, ceil, hw = pool_geometry(c, dilation=True)
    shape = pool_input_shape(c, hw)
    x = c.tie_free(*shape).requires_grad_(True)
    y = F.max_pool2d(x, k, s, p, d, ceil_mode=ceil)
    go, (gx,) = grad_of(y, [x], c)
    cfg = dict(kernel_size=list(k), stride=list(s), padding=list(p), dilation=list(d),
               ceil_mode=ceil, input_shape=shape, gen={"seed": c.seed})
    return cfg, {"input": x, "output": y, "grad_output": go, "grad_input": gx}


def avg_pool2d(c, divisor=None):
    k, s, p, _, ceil, hw = pool_geometry(c, dilation=False)
    shape = pool_input_shape(c, hw)
    cip = c.r.random() < 0.5
    x = c.randn(*shape).requires_grad_(True)
    y = F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=cip, divisor_override=divisor)
    go, (gx,) = grad_of(y, [x], c)
    cfg = dict(kernel_size=list(k), stride=list(s), padding=list(p), ceil_mode=ceil,
               count_include_pad=cip, divisor_override=divisor, input_shape=shape,
               gen={"seed": c.seed})
    return cfg, {"input": x, "output": y, "grad_output": go, "grad_input": gx}


def avg_pool2d_divisor(c):
    return avg_pool2d(c, divisor=c.r.randint(1, 10))


def adaptive_avg_pool2d(c):
    r = c.r
    h, w = r.randint(1, 30), r.randint(1, 30)
    oh, ow = r.randint(1, h + 4), r.randint(1, w + 4)
    shape = [r.randint(1, 9), r.randint(1, 20), h, w]
    x = c.randn(*shape).requires_grad_(True)
    y = F.adaptive_avg_pool2d(x, (oh, ow))
    go, (gx,) = grad_of(y, [x], c)
    cfg = dict(output_size=[oh, ow], input_shape=shape, gen={"seed": c.seed})
    return cfg, {"input": x, "output": y, "grad_output": go, "grad_input": gx}


def linear(c):
    r = c.r
    n, fin, fout = r.randint(1, 9), r.randint(1, 64), r.randint(1, 40)
    if r.random() < 0.3:  # a weight of >= 1M elements and <= 16 rows: the dot-product GEMM
        n, fin, fout = r.randint(1, 20), r.randint(1000, 2600), r.randint(400, 1100)
    bias = r.random() < 0.6
    m = nn.Linear(fin, fout, bias, dtype=DT)
    x = c.randn(n, fin).requires_grad_(True)
    with torch.no_grad():
        m.weight.copy_(c.randn(fout, fin, scale=1 / math.sqrt(fin)))
        if bias:
            m.bias.copy_(c.randn(fout))
    t = weighted_case(m, x, bias, c)
    cfg = dict(in_features=fin, out_features=fout, bias=bias, input_shape=[n, fin],
               gen={"seed": c.seed})
    return cfg, t


def any_shape(c):
    r = c.r
    if r.random() < 0.15:  # > 32k elements: the chunked parallel element-wise loops
        return [r.randint(1, 8), r.randint(8, 32), r.randint(16, 40), r.randint(16, 40)]
    if r.random() < 0.4:
        return [r.randint(1, 9), r.randint(1, 40)]
    return [r.randint(1, 6), r.randint(1, 12), r.randint(1, 9), r.randint(1, 9)]


def elementwise(fn, extra=None):
    def make(c):
        shape = any_shape(c)
        scale = c.r.choice([0.5, 2.0, 10.0])
        x = c.away_from_zero(*shape, scale=scale).requires_grad_(True)
        cfg = dict(extra(c) if extra else {})
        y = fn(x, **cfg)
        go, (gx,) = grad_of(y, [x], c)
        cfg.update(input_shape=shape, gen={"input_scale": scale, "seed": c.seed})
        return cfg, {"input": x, "output": y, "grad_output": go, "grad_input": gx}
    return make


def softmaxish(fn, three_d=False):
    def make(c):
        shape = any_shape(c)
        if three_d:
            shape = [c.r.randint(1, 6), c.r.randint(1, 12), c.r.randint(1, 9)]
        scale = c.r.choice([1.0, 2.0, 30.0, 1000.0])
        x = c.randn(*shape, scale=scale)
        if c.r.random() < 0.3:
            x = x + c.r.choice([-1000.0, 1000.0])
        x.requires_grad_(True)
        y = fn(x, dim=1)
        go, (gx,) = grad_of(y, [x], c)
        cfg = dict(dim=1, input_shape=shape, gen={"input_scale": scale, "seed": c.seed})
        return cfg, {"input": x, "output": y, "grad_output": go, "grad_input": gx}
    return make


def local_response_norm(c, three_d=False):
    r = c.r
    size = r.randint(1, 8)
    alpha = r.choice([1e-4, 1e-3, 0.01, 0.1, 1.0, r.uniform(1e-4, 2.0)])
    beta = r.choice([0.75, 0.5, 1.0, r.uniform(0.1, 2.0)])
    k = r.choice([1.0, 2.0, r.uniform(0.5, 3.0)])
    shape = [r.randint(1, 6), r.randint(1, 20), r.randint(1, 9), r.randint(1, 9)]
    if r.random() < 0.2:
        shape = [r.randint(1, 4), r.randint(8, 40), r.randint(8, 30), r.randint(8, 30)]
    if three_d:
        shape = shape[:3]
    scale = r.choice([1.0, 3.0, 10.0, 20.0])
    x = c.randn(*shape, scale=scale).requires_grad_(True)
    y = F.local_response_norm(x, size, alpha, beta, k)
    go, (gx,) = grad_of(y, [x], c)
    cfg = dict(size=size, alpha=alpha, beta=beta, k=k, input_shape=shape,
               gen={"input_scale": scale, "seed": c.seed})
    return cfg, {"input": x, "output": y, "grad_output": go, "grad_input": gx}


def batch_norm2d(c, momentum_none=False):
    r = c.r
    ch = r.randint(1, 16)
    shape = [r.randint(1, 8), ch, r.randint(1, 8), r.randint(1, 8)]
    if r.random() < 0.2:
        shape = [r.randint(1, 8), ch, r.randint(8, 40), r.randint(8, 40)]
    eps = r.choice([1e-5, 1e-3, 0.1])
    momentum = None if momentum_none else r.choice([0.1, 0.0, 1.0, round(r.uniform(0, 1), 4)])
    affine = r.random() < 0.7
    track = r.random() < 0.75
    mode = r.choice(["train", "eval"])
    if shape[0] * shape[2] * shape[3] == 1 and (mode == "train" or not track):
        shape[0] = 2  # batch statistics need more than one value per channel
    m = nn.BatchNorm2d(ch, eps, momentum, affine, track, dtype=DT)
    scale, offset = r.choice([1.0, 2.0, 5.0]), r.choice([0.0, 1.0, -3.0])
    x = (c.randn(*shape, scale=scale) + offset).requires_grad_(True)
    t = {}
    with torch.no_grad():
        if affine:
            m.weight.copy_(c.randn(ch) * 0.5 + 1)
            m.bias.copy_(c.randn(ch))
            t["weight"], t["bias"] = m.weight.detach().clone(), m.bias.detach().clone()
        if track:
            m.running_mean.copy_(c.randn(ch))
            m.running_var.copy_(c.uniform(0.5, 2.0, ch))
            t["running_mean"] = m.running_mean.clone()
            t["running_var"] = m.running_var.clone()
    m.train(mode == "train")
    y = m(x)
    params = [x] + ([m.weight, m.bias] if affine else [])
    go, grads = grad_of(y, params, c)
    t.update(input=x, output=y, grad_output=go, grad_input=grads[0])
    if affine:
        t["grad_weight"], t["grad_bias"] = grads[1], grads[2]
    if track:
        t["running_mean_after"] = m.running_mean.clone()
        t["running_var_after"] = m.running_var.clone()
    cfg = dict(num_features=ch, eps=eps, momentum=momentum, affine=affine,
               track_running_stats=track, mode=mode, input_shape=shape,
               gen={"input_scale": scale, "input_offset": offset, "seed": c.seed})
    return cfg, t


def batch_norm2d_momentum_none(c):
    return batch_norm2d(c, momentum_none=True)


def cross_entropy(c):
    r = c.r
    n, classes = r.randint(1, 9), r.randint(2, 50)
    eps = r.choice([0.0, 0.0, 0.1, round(r.uniform(0, 1), 4), 1.0])
    scale = r.choice([1.0, 3.0, 100.0, 1000.0])
    offset = r.choice([0.0, 0.0, 1000.0, -1000.0])
    x = (c.randn(n, classes, scale=scale) + offset).requires_grad_(True)
    target = torch.randint(0, classes, (n,), generator=c.g)
    y = F.cross_entropy(x, target, reduction="mean", label_smoothing=eps)
    (gx,) = torch.autograd.grad(y, [x])
    cfg = dict(num_classes=classes, reduction="mean", label_smoothing=eps, input_shape=[n, classes],
               gen={"logit_scale": scale, "logit_offset": offset, "seed": c.seed})
    return cfg, {"input": x, "target": target.to(DT), "output": y,
                 "grad_output": torch.tensor(1.0, dtype=DT), "grad_input": gx}


def mse_loss(c):
    shape = any_shape(c)
    x = c.randn(*shape).requires_grad_(True)
    target = c.randn(*shape)
    y = F.mse_loss(x, target)
    (gx,) = torch.autograd.grad(y, [x])
    cfg = dict(reduction="mean", input_shape=shape, gen={"seed": c.seed})
    return cfg, {"input": x, "target": target, "output": y,
                 "grad_output": torch.tensor(1.0, dtype=DT), "grad_input": gx}


def flatten(c, other_dims=False):
    r = c.r
    shape = [r.randint(1, 6), r.randint(1, 12), r.randint(1, 9), r.randint(1, 9)]
    if other_dims and r.random() < 0.4:  # 2-D and 3-D inputs
        shape = shape[:r.choice([2, 3])]
    start, end = 1, -1
    if other_dims:
        start, end = r.choice([(1, 2), (2, 3), (2, -1), (1, -2), (0, -1), (0, 1), (1, -1)])
        start, end = min(start, len(shape) - 1), min(end, len(shape) - 1)
        if start > end % len(shape):
            start, end = 1, -1
    x = c.randn(*shape).requires_grad_(True)
    y = torch.flatten(x, start, end)
    go, (gx,) = grad_of(y, [x], c)
    cfg = dict(start_dim=start, end_dim=end, input_shape=shape, gen={"seed": c.seed})
    return cfg, {"input": x, "output": y, "grad_output": go, "grad_input": gx}


def flatten_dims(c):
    return flatten(c, other_dims=True)


def two_inputs(concat, low_rank=False):
    def make(c):
        r = c.r
        shape = [r.randint(1, 6), r.randint(1, 12), r.randint(1, 9), r.randint(1, 9)]
        if low_rank:  # 2-D and 3-D inputs
            shape = shape[:r.choice([2, 3])]
        if r.random() < 0.2:
            shape = [r.randint(1, 8), r.randint(8, 32), r.randint(16, 40), r.randint(16, 40)]
        shape2 = list(shape)
        if concat:
            shape2[1] = r.randint(1, 12)
        a = c.randn(*shape).requires_grad_(True)
        b = c.randn(*shape2).requires_grad_(True)
        y = torch.cat([a, b], 1) if concat else a + b
        go, (ga, gb) = grad_of(y, [a, b], c)
        cfg = dict(dim=1) if concat else {}
        cfg.update(input_shape=shape, input2_shape=shape2, gen={"seed": c.seed})
        return cfg, {"input": a, "input2": b, "output": y, "grad_output": go,
                     "grad_input": ga, "grad_input2": gb}
    return make


# ---------------------------------------------------------------- composites


def randomize_module(m, c):
    """Random weights and BN statistics; num_batches_tracked a small random count."""
    with torch.no_grad():
        for name, t in m.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(c.r.randint(0, 5))
            elif name.endswith("running_var"):
                t.copy_(c.uniform(0.5, 2.0, *t.shape))
            elif name.endswith("bn.weight") or (name.endswith("weight") and t.dim() == 1):
                t.copy_(c.randn(*t.shape) * 0.5 + 1)
            elif t.dim() == 4:
                fan_in = t.shape[1] * t.shape[2] * t.shape[3]
                t.copy_(c.randn(*t.shape, scale=1 / math.sqrt(fan_in)))
            else:
                t.copy_(c.randn(*t.shape, scale=0.5))


def run_composite(m, c, shape, mode):
    randomize_module(m, c)
    t = {f"param.{k}": v.clone().to(DT) for k, v in m.state_dict().items()}
    m.train(mode == "train")
    x = c.randn(*shape).requires_grad_(True)
    y = m(x)
    names = [n for n, _ in m.named_parameters()]
    go, grads = grad_of(y, [x] + [p for _, p in m.named_parameters()], c)
    t.update(input=x, output=y, grad_output=go, grad_input=grads[0])
    for n, g in zip(names, grads[1:]):
        t[f"grad.{n}"] = g
    for n, b in m.named_buffers():
        t[f"param_after.{n}"] = b.clone().to(DT)
    return t


def other_norm(c, m, cfg):
    """Gives every batch norm of block `m` a random eps and momentum (None: the cumulative
    average), recorded as the config's bn_eps / bn_momentum: torchvision's `norm_layer`."""
    eps = c.r.choice([1e-5, 1e-3, 0.01, round(c.r.uniform(1e-6, 0.1), 6)])
    momentum = c.r.choice([0.1, 0.01, 0.5, 1.0, None])
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.eps, mod.momentum = eps, momentum
    cfg.update(bn_eps=eps, bn_momentum=momentum)


def resnet_basicblock(c, norm=False):
    r = c.r
    inplanes, planes = r.randint(1, 16), r.randint(1, 16)
    big = r.random() < 0.35  # >= 16 channels: Winograd convs inside the block
    if big:
        inplanes, planes = r.randint(16, 40), r.randint(16, 40)
    stride = r.choice([1, 1, 2, 3])
    downsample = stride != 1 or inplanes != planes or r.random() < 0.2
    mode = r.choice(["train", "eval"])
    ds = None
    if downsample:
        ds = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
    m = importlib.import_module("torchvision.models.resnet").BasicBlock(inplanes, planes, stride, ds).to(DT)
    shape = [r.randint(1, 6), inplanes, r.randint(1, 16), r.randint(1, 16)]
    if big:
        shape = [r.randint(1, 4), inplanes, r.randint(8, 32), r.randint(8, 32)]
    if mode == "train" and shape[0] == 1:
        shape[0] = 2
    cfg = dict(source="torchvision.models.resnet.BasicBlock", inplanes=inplanes, planes=planes,
               stride=stride, downsample=downsample, expansion=1, bn_eps=1e-5, bn_momentum=0.1,
               mode=mode, input_shape=shape, gen={"seed": c.seed})
    if norm:
        other_norm(c, m, cfg)
    t = run_composite(m, c, shape, mode)
    return cfg, t


def resnet_bottleneck(c, norm=False):
    r = c.r
    big = r.random() < 0.35
    planes = r.randint(16, 24) if big else r.randint(1, 8)
    groups = r.choice([1, 1, 2, 4])
    base_width = r.choice([64, 64, 32, 128, 16])
    dilation = r.choice([1, 1, 2, 3])
    width = int(planes * (base_width / 64.0)) * groups
    if width == 0:
        base_width, width = 64, planes * groups
    inplanes = r.choice([4 * planes, r.randint(1, 24)])
    stride = r.choice([1, 1, 2, 3])
    downsample = stride != 1 or inplanes != 4 * planes or r.random() < 0.2
    mode = r.choice(["train", "eval"])
    ds = None
    if downsample:
        ds = nn.Sequential(nn.Conv2d(inplanes, 4 * planes, 1, stride, bias=False),
                           nn.BatchNorm2d(4 * planes))
    m = importlib.import_module("torchvision.models.resnet").Bottleneck(inplanes, planes, stride, ds, groups, base_width,
                                             dilation).to(DT)
    shape = [r.randint(1, 5), inplanes, r.randint(1, 14), r.randint(1, 14)]
    if big:
        shape = [r.randint(1, 3), inplanes, r.randint(8, 28), r.randint(8, 28)]
    if mode == "train" and shape[0] == 1:
        shape[0] = 2
    cfg = dict(source="torchvision.models.resnet.Bottleneck", inplanes=inplanes, planes=planes,
               stride=stride, downsample=downsample, groups=groups, base_width=base_width,
               dilation=dilation, expansion=4, width=width, bn_eps=1e-5, bn_momentum=0.1,
               mode=mode, input_shape=shape, gen={"seed": c.seed})
    if norm:
        other_norm(c, m, cfg)
    t = run_composite(m, c, shape, mode)
    return cfg, t


class InceptionV1Paper(nn.Module):
    """The GoogLeNet paper's Inception module: conv+bias+ReLU everywhere, a real 5x5, no BN."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
        super().__init__()
        self.branch1 = nn.Sequential(nn.Conv2d(cin, c1, 1), nn.ReLU())
        self.branch2 = nn.Sequential(nn.Conv2d(cin, c3r, 1), nn.ReLU(),
                                     nn.Conv2d(c3r, c3, 3, padding=1), nn.ReLU())
        self.branch3 = nn.Sequential(nn.Conv2d(cin, c5r, 1), nn.ReLU(),
                                     nn.Conv2d(c5r, c5, 5, padding=2), nn.ReLU())
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                     nn.Conv2d(cin, pp, 1), nn.ReLU())

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def inception(paper, norm=False):
    def make(c):
        r = c.r
        big = r.random() < 0.35
        ch = [r.randint(16, 40) if big else r.randint(1, 12) for _ in range(7)]
        mode = r.choice(["train", "eval"])
        shape = [r.randint(1, 5), ch[0], r.randint(1, 12), r.randint(1, 12)]
        if big:
            shape = [r.randint(1, 4), ch[0], r.randint(8, 28), r.randint(8, 28)]
        if not paper and mode == "train" and shape[0] == 1:
            shape[0] = 2
        keys = ["in_channels", "ch1x1", "ch3x3red", "ch3x3", "ch5x5red", "ch5x5", "pool_proj"]
        cfg = dict(zip(keys, ch))
        if paper:
            m = InceptionV1Paper(*ch).to(DT)
            cfg.update(source="torch_parity_random.InceptionV1Paper (Szegedy et al. 2014, no BN)",
                       branch3_kernel_size=5, conv_bias=True)
            mode = "train"
        else:
            m = importlib.import_module("torchvision.models.googlenet").Inception(*ch).to(DT)
            cfg.update(source="torchvision.models.googlenet.Inception", branch3_kernel_size=3,
                       conv_bias=False, bn_eps=1e-3, bn_momentum=0.1, mode=mode)
            if norm:
                other_norm(c, m, cfg)
        # (Gaussian inputs: a near-tie in branch4's 3x3 max pool has negligible probability)
        t = run_composite(m, c, shape, mode)
        cfg.update(input_shape=shape, gen={"seed": c.seed})
        return cfg, t
    return make


# ---------------------------------------------------------------- optimizers


def optimizer(layer, extras=False):
    def make(c):
        r = c.r
        shape = r.choice([[r.randint(1, 9)], [r.randint(1, 6), r.randint(1, 6)],
                          [r.randint(1, 4), r.randint(1, 3), 3, 3]])
        maximize = extras and r.random() < 0.5
        if layer == "sgd":
            momentum = r.choice([0.0, 0.9, 0.5, round(r.uniform(0, 1), 4)])
            nesterov = momentum > 0 and r.random() < 0.4
            dampening = 0.0 if nesterov else r.choice([0.0, 0.0, 0.3, 1.0, round(r.uniform(0, 1), 4)])
            kw = dict(lr=r.choice([0.1, 0.01, round(r.uniform(1e-3, 1), 4)]), momentum=momentum,
                      dampening=dampening, nesterov=nesterov,
                      weight_decay=r.choice([0.0, 5e-4, 0.1, round(r.uniform(0, 1), 4)]))
            cls, cfg, keys = torch.optim.SGD, dict(optimizer="torch.optim.SGD", **kw), ["momentum_buffer"]
        else:
            amsgrad = extras and not maximize
            kw = dict(lr=r.choice([1e-3, 0.01, round(r.uniform(1e-4, 0.5), 5)]),
                      betas=(r.choice([0.9, 0.8, round(r.uniform(0, 0.99), 4)]),
                             r.choice([0.999, 0.95, round(r.uniform(0.5, 0.9999), 5)])),
                      eps=r.choice([1e-8, 1e-6, 0.1]),
                      weight_decay=r.choice([0.0, 0.01, 0.1, round(r.uniform(0, 1), 4)]),
                      amsgrad=amsgrad)
            cls = torch.optim.Adam if layer == "adam" else torch.optim.AdamW
            cfg = dict(optimizer=f"torch.optim.{cls.__name__}", **dict(kw, betas=list(kw["betas"])))
            keys = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if amsgrad else [])
        scale = r.choice([1.0, 1e-3, 100.0])
        p0 = c.randn(*shape)
        grads = [c.randn(*shape, scale=scale) for _ in range(3)]
        p = p0.clone().requires_grad_(True)
        opt = cls([p], foreach=False, maximize=maximize, **kw)
        t = {"param_initial": p0.clone()}
        for k, g in enumerate(grads, start=1):
            t[f"grad_{k}"] = g.clone()
            p.grad = g.clone()
            opt.step()
            t[f"param_step_{k}"] = p.detach().clone()
            for key in keys:
                v = opt.state[p].get(key)
                if v is not None:
                    t[f"state_step_{k}.{key}"] = v.detach().clone()
        cfg.update(maximize=maximize, foreach=False, steps=3, param_shape=shape,
                   gen={"grad_scale": scale, "seed": c.seed})
        return cfg, t
    return make


LAYERS = {
    "conv2d": conv2d,
    "max_pool2d": max_pool2d,
    "avg_pool2d": avg_pool2d,
    "adaptive_avg_pool2d": adaptive_avg_pool2d,
    "linear": linear,
    "relu": elementwise(torch.relu),
    "sigmoid": elementwise(torch.sigmoid),
    "tanh": elementwise(torch.tanh),
    "leaky_relu": elementwise(F.leaky_relu, lambda c: {
        "negative_slope": c.r.choice([0.01, 0.2, 1.7, 0.0, round(c.r.uniform(-1, 3), 4)])}),
    "softmax": softmaxish(torch.softmax),
    "log_softmax": softmaxish(torch.log_softmax),
    "local_response_norm": local_response_norm,
    "batch_norm2d": batch_norm2d,
    "cross_entropy": cross_entropy,
    "mse_loss": mse_loss,
    "flatten": flatten,
    "concat": two_inputs(True),
    "residual_add": two_inputs(False),
    "resnet_basicblock": resnet_basicblock,
    "resnet_bottleneck": resnet_bottleneck,
    "inception_torchvision": inception(paper=False),
    "inception_v1_paper": inception(paper=True),
    "sgd": optimizer("sgd"),
    "adam": optimizer("adam"),
    "adamw": optimizer("adamw"),
}

# Configurations outside the README's format (written only with --extras), by the layer name
# their files carry.
EXTRAS = {
    "avg_pool2d": avg_pool2d_divisor,
    "batch_norm2d": batch_norm2d_momentum_none,
    "flatten": flatten_dims,
    "concat": two_inputs(True, low_rank=True),
    "residual_add": two_inputs(False, low_rank=True),
    "softmax": softmaxish(torch.softmax, three_d=True),
    "log_softmax": softmaxish(torch.log_softmax, three_d=True),
    "local_response_norm": lambda c: local_response_norm(c, three_d=True),
    "resnet_basicblock": lambda c: resnet_basicblock(c, norm=True),
    "resnet_bottleneck": lambda c: resnet_bottleneck(c, norm=True),
    "inception_torchvision": inception(paper=False, norm=True),
    "sgd": optimizer("sgd", extras=True),
    "adam": optimizer("adam", extras=True),
    "adamw": optimizer("adamw", extras=True),
}

MODE_LAYERS = {"batch_norm2d", "resnet_basicblock", "resnet_bottleneck", "inception_torchvision"}


def write_case(out, layer, index, cfg, tensors):
    cfg = dict({"layer": layer}, **cfg)
    meta = {"config": json.dumps(cfg), "layer": layer, "generator": GENERATOR,
            "torch_version": torch.__version__, "set": "random"}
    if layer in MODE_LAYERS:
        meta["mode"] = cfg["mode"]
    data = {k: v.detach().to(DT).contiguous().clone() for k, v in tensors.items()}
    save_file(data, str(out / f"{layer}_{index:03d}.safetensors"), metadata=meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-layer", type=int, default=20)
    ap.add_argument("--only", nargs="*", help="layer kinds to write (default: all)")
    ap.add_argument("--extras", action="store_true",
                    help="write the out-of-format configurations instead (see the docstring)")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(DT)
    args.out.mkdir(parents=True, exist_ok=True)
    table = EXTRAS if args.extras else LAYERS
    for li, (layer, make) in enumerate(table.items()):
        if args.only and layer not in args.only:
            continue
        for i in range(args.per_layer):
            seed = args.seed * 1_000_000 + li * 1000 + i
            cfg, tensors = make(Ctx(seed))
            # The README's cases are finite (e.g. no max-pool window that sees only padding).
            while not all(torch.isfinite(t).all() for t in tensors.values()):
                seed += 100_000
                cfg, tensors = make(Ctx(seed))
            write_case(args.out, layer, i, cfg, tensors)
        print(f"{layer}: {args.per_layer}")


if __name__ == "__main__":
    main()
