#!/usr/bin/env python3
"""PyTorch side of docs/PERFORMANCE.md: training-step throughput on this machine, 2 threads.

    /tmp/venv/bin/python scripts/torch_speed.py

Times the same steps as `cargo bench --bench training` (forward, cross-entropy, backward,
SGD with momentum) for LeNet-5 at batch 64 (28x28) and ResNet-50 at batch 8 (224x224), f32.
"""
import time

import torch
import torchvision

torch.set_num_threads(2)
nn = torch.nn


def throughput(model, shape, steps, warmup):
    x = torch.randn(*shape)
    y = torch.arange(shape[0]) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * shape[0] / (time.perf_counter() - start)


lenet = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
                      nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
print(f"lenet5_modern b64 28x28: {throughput(lenet, (64, 1, 28, 28), 300, 30):.0f} img/s")
print(f"resnet50 b8 224x224: {throughput(torchvision.models.resnet50(), (8, 3, 224, 224), 6, 2):.2f} img/s")
