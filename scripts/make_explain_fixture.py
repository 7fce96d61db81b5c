"""Writes tests/fixtures/explain/small_cnn.safetensors: a small CNN, one image, and PyTorch's
saliency map and Grad-CAM for it, for tests/explain.rs.

Run: /root/torchenv/bin/python scripts/make_explain_fixture.py

The model, in float64 with seeded random weights, for a [3, 9, 7] image and 5 classes:

    0 Conv2d(3, 4, 3, padding=1)  1 ReLU  2 MaxPool2d(2)        [4, 4, 3]
    3 Conv2d(4, 6, 3, padding=1)  4 ReLU                        [6, 4, 3]
    5 Flatten                     6 Linear(72, 5)

Tensors in the file (model parameters under their state_dict names, the rest prefixed):
  0.weight ... 6.bias     the parameters
  input                   [3, 9, 7] the image
  class                   [1] the explained class (as float64)
  saliency                [9, 7]  max over channels of |d score / d input|
  cam4.weights            [6]     Grad-CAM at child 4: spatial means of d score / d A
  cam4.coarse             [4, 3]  ReLU(sum_k weights_k A_k)
  cam4.heat               [9, 7]  F.interpolate(coarse, (9, 7), bilinear, align_corners=False)
  cam2.weights, cam2.coarse, cam2.heat   the same at child 2 (the max pool)
"""

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "explain")
CLASS = 3


def grad_cam(net, at, x, cls):
    a = net[: at + 1](x)
    a.retain_grad()
    score = net[at + 1 :](a)[0, cls]
    score.backward()
    weights = a.grad.mean(dim=(2, 3))[0]
    coarse = F.relu((weights[:, None, None] * a[0]).sum(0))
    heat = F.interpolate(coarse[None, None], size=x.shape[2:], mode="bilinear", align_corners=False)
    return weights.detach(), coarse.detach(), heat[0, 0].detach()


def main():
    torch.manual_seed(11)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 4 * 3, 5),
    ).double()
    x = torch.randn(1, 3, 9, 7, dtype=torch.float64)

    xs = x.clone().requires_grad_(True)
    net(xs)[0, CLASS].backward()
    saliency = xs.grad.abs().amax(dim=1)[0]

    out = {k: v.detach().clone() for k, v in net.state_dict().items()}
    out["input"] = x[0].clone()
    out["class"] = torch.tensor([float(CLASS)], dtype=torch.float64)
    out["saliency"] = saliency.clone()
    for at in (4, 2):
        net.zero_grad()
        w, c, h = grad_cam(net, at, x, CLASS)
        assert c.abs().sum() > 0, "a Grad-CAM map of all zeros would test little"
        out[f"cam{at}.weights"], out[f"cam{at}.coarse"], out[f"cam{at}.heat"] = w, c, h
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(OUT, "small_cnn.safetensors"))
    print("wrote", os.path.join(OUT, "small_cnn.safetensors"), {k: list(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
