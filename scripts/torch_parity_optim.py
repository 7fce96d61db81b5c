"""Extra PyTorch parity cases for the optimizer settings the public cases miss.

Writes tests/parity/sgd_002..004 and adam_001..002 in the case format of
tests/parity/README.md (float64, three steps from stored gradients, state after each step):

  sgd_002  plain SGD: no momentum, no weight decay (the state holds no momentum buffer)
  sgd_003  momentum 0.9 with dampening 0.3 and weight decay
  sgd_004  momentum 0.5 with dampening 1.0 (the buffer keeps only its first gradient)
  adam_001 Adam with coupled weight decay 0.1
  adam_002 Adam with weight decay 0.01 and betas (0.8, 0.95), eps 1e-6

It also enters each case in tests/parity/index.json (file, config, bytes, sha256, tensor
shapes), replacing an older entry of the same file, so the index lists every case on disk
(`parity::the_index_lists_every_case_on_disk` checks that).

Run by hand:  /root/torchenv/bin/python scripts/torch_parity_optim.py
"""
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parent.parent / "tests" / "parity"


def run(name, layer, opt_cls, kwargs, shape, seed, state_keys, config):
    g = torch.Generator().manual_seed(seed)
    p0 = torch.randn(shape, generator=g, dtype=torch.float64)
    grads = [torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3)]
    p = p0.clone().requires_grad_(True)
    opt = opt_cls([p], foreach=False, **kwargs)
    tensors = {"param_initial": p0.clone()}
    for k, grad in enumerate(grads, start=1):
        tensors[f"grad_{k}"] = grad.clone()
        p.grad = grad.clone()
        opt.step()
        tensors[f"param_step_{k}"] = p.detach().clone()
        state = opt.state[p]
        for key in state_keys:
            if key in state and state[key] is not None:
                tensors[f"state_step_{k}.{key}"] = state[key].detach().clone()
    cfg = dict(config, layer=layer, steps=3, param_shape=list(shape),
               maximize=False, foreach=False, gen={"grad_scale": 1.0, "seed": seed})
    meta = {
        "config": json.dumps(cfg),
        "layer": layer,
        "generator": "scripts/torch_parity_optim.py",
        "torch_version": torch.__version__,
        "set": "public",
    }
    path = OUT / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    print(name, sorted(tensors))
    data = path.read_bytes()
    return {
        "file": path.name,
        "layer": layer,
        "config": cfg,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())},
    }


def update_index(entries):
    """Puts `entries` into tests/parity/index.json, replacing entries of the same files."""
    path = OUT / "index.json"
    index = json.loads(path.read_text())
    new = {e["file"] for e in entries}
    cases = [c for c in index["cases"] if c["file"] not in new] + entries
    index["cases"] = cases
    index["num_cases"] = len(cases)
    counts = {}
    for c in cases:
        counts[c["layer"]] = counts.get(c["layer"], 0) + 1
    index["counts"] = dict(sorted(counts.items()))
    index["total_bytes"] = sum(c["bytes"] for c in cases)
    path.write_text(json.dumps(index, indent=1) + "\n")


def sgd(name, seed, lr, momentum, dampening, weight_decay, nesterov=False):
    kw = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
    cfg = dict(optimizer="torch.optim.SGD", **kw)
    return run(name, "sgd", torch.optim.SGD, kw, (4, 3), seed, ["momentum_buffer"], cfg)


def adam(name, seed, lr, betas, eps, weight_decay):
    kw = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=False)
    cfg = dict(optimizer="torch.optim.Adam", lr=lr, betas=list(betas), eps=eps,
               weight_decay=weight_decay, amsgrad=False)
    return run(name, "adam", torch.optim.Adam, kw, (3, 5), seed, ["exp_avg", "exp_avg_sq"], cfg)


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    update_index([
        sgd("sgd_002", 2022002, lr=0.05, momentum=0.0, dampening=0.0, weight_decay=0.0),
        sgd("sgd_003", 2022003, lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.001),
        sgd("sgd_004", 2022004, lr=0.2, momentum=0.5, dampening=1.0, weight_decay=0.0),
        adam("adam_001", 2023001, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
        adam("adam_002", 2023002, lr=0.003, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.01),
    ])
