#!/usr/bin/env python3
"""PyTorch references for convnet's model zoo (run by hand; the crate never needs Python).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch torchvision safetensors numpy
    /tmp/venv/bin/python scripts/torch_reference.py zoo OUT_DIR      # torchvision models vs `zoo forward`
    /tmp/venv/bin/python scripts/torch_reference.py lenet            # LeNet-5 trained on MNIST -> tests/fixtures/

`zoo`: for each torchvision model, builds it with random weights (batch-norm statistics randomised
too, so eval-mode batch norm is not the identity), saves its state_dict with
safetensors.torch.save_file, runs a random input through it in eval mode, then runs
`cargo run --release --example zoo -- forward MODEL ...` and compares the logits
(relative error max|a-b| / max|b| must be <= 1e-4).

`lenet`: trains the flat nn.Sequential LeNet-5 that convnet's `zoo::lenet5_modern` mirrors on
the shipped MNIST, and writes its weights and its predictions on the 10,000 test images to
tests/fixtures/, where tests/torch_lenet.rs checks that convnet predicts the same digits.
"""
import gzip
import os
import subprocess
import sys

import numpy as np
import torch
import torchvision
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(2)

MODELS = {
    "resnet18": lambda: torchvision.models.resnet18(),
    "resnet50": lambda: torchvision.models.resnet50(),
    "googlenet_torchvision": lambda: torchvision.models.googlenet(aux_logits=False, init_weights=True),
    "alexnet_torchvision": lambda: torchvision.models.alexnet(),
    "vgg11": lambda: torchvision.models.vgg11(),
}


def randomise_batch_norm(model, gen):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))


def zoo(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    failures = 0
    for name, make in MODELS.items():
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(1)
        model = make()
        randomise_batch_norm(model, gen)
        model.eval()
        x = torch.randn(2, 3, 224, 224, generator=gen)
        with torch.no_grad():
            y = model(x)
        w, i, o = (os.path.join(out_dir, f"{name}.{k}.safetensors") for k in ("weights", "input", "output"))
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, w)
        save_file({"input": x.contiguous()}, i)
        cmd = ["cargo", "run", "--release", "--quiet", "--example", "zoo", "--",
               "forward", name, "--weights", w, "--input", i, "--output", o]
        subprocess.run(cmd, check=True, cwd=ROOT)
        got = load_file(o)["output"]
        rel = ((got - y).abs().max() / y.abs().max()).item()
        ok = rel <= 1e-4
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: logits {tuple(y.shape)}, max rel err {rel:.2e}", flush=True)
    print(f"{len(MODELS) - failures} passed, {failures} failed")
    return failures == 0


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def lenet():
    mnist = os.path.join(ROOT, "data", "mnist")
    def images(name):
        x = read_idx(os.path.join(mnist, name)).astype(np.float32) / 255.0
        return torch.from_numpy((x - 0.1307) / 0.3081).unsqueeze(1)
    train_x, test_x = images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")
    train_y = torch.from_numpy(read_idx(os.path.join(mnist, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    test_y = torch.from_numpy(read_idx(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
                          nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for epoch in range(2):
        perm = torch.randperm(len(train_x))
        for b in range(0, len(train_x), 64):
            idx = perm[b:b + 64]
            loss = nn.functional.cross_entropy(model(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(test_x).argmax(1)
    acc = (pred == test_y).float().mean().item()
    fixtures = os.path.join(ROOT, "tests", "fixtures")
    os.makedirs(fixtures, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(fixtures, "lenet5_torch_mnist.safetensors"))
    with open(os.path.join(fixtures, "lenet5_torch_mnist_predictions.bin"), "wb") as f:
        f.write(bytes(pred.to(torch.uint8).tolist()))
    print(f"PyTorch LeNet-5: test accuracy {100 * acc:.2f}%; wrote weights and 10,000 predictions to {fixtures}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "lenet":
        lenet()
    elif len(sys.argv) == 3 and sys.argv[1] == "zoo":
        sys.exit(0 if zoo(sys.argv[2]) else 1)
    else:
        print(__doc__)
        sys.exit(2)
