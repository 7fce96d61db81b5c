"""Writes tests/fixtures/explain/small_cnn.safetensors and tiny_resnet.safetensors: small CNNs,
one image each, and PyTorch's saliency map and Grad-CAM for them, for tests/explain.rs.
With --resnet18 DIR, also the same for torchvision's ResNet-18 (random weights, 94 MB in
float64, so written outside the repository) for the ignored test in tests/explain.rs.

Run: /root/torchenv/bin/python scripts/make_explain_fixture.py [--only tiny] [--resnet18 DIR]

Saliency is max over channels of |d score / d input| by autograd. Grad-CAM is computed with
module hooks, as Grad-CAM tools for PyTorch do: a forward hook on the named submodule keeps its
output A and registers a tensor hook that keeps d score / d A; then weights = spatial mean of
the gradient, coarse = ReLU(sum_k weights_k A_k), heat = F.interpolate(coarse, image size,
bilinear, align_corners=False). ReLUs run out of place so the hooked tensors stay as they were.

small_cnn.safetensors:

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

import argparse
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


def hooked_cam(model, layer, x, cls):
    """Grad-CAM at submodule `layer` (a dotted name) with forward and tensor hooks."""
    store = {}

    def keep(module, inputs, output):
        store["a"] = output.detach().clone()
        output.register_hook(lambda g: store.__setitem__("g", g.detach().clone()))

    handle = model.get_submodule(layer).register_forward_hook(keep)
    model.zero_grad()
    model(x)[0, cls].backward()
    handle.remove()
    a, g = store["a"][0], store["g"][0]
    weights = g.mean(dim=(1, 2))
    coarse = F.relu((weights[:, None, None] * a).sum(0))
    heat = F.interpolate(coarse[None, None], size=x.shape[2:], mode="bilinear", align_corners=False)
    return weights, coarse, heat[0, 0]


def saliency_of(model, x, cls):
    xs = x.clone().requires_grad_(True)
    model.zero_grad()
    model(xs)[0, cls].backward()
    return xs.grad.abs().amax(dim=1)[0]


def no_inplace(model):
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False


def random_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


class Mix(nn.Module):
    """An Inception-style module: two branches concatenated along channels."""

    def __init__(self):
        super().__init__()
        self.branch1 = nn.Conv2d(12, 4, 1)
        self.branch2 = nn.Sequential(nn.Conv2d(12, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x)], dim=1)


TINY_LAYERS = ["mix", "layer1", "layer1.0.bn2", "layer1.0.downsample", "mix.branch2.2"]


def tiny_resnet():
    """tiny_resnet.safetensors: a ResNet stem, one BasicBlock with a projection shortcut and an
    Inception-style module, in float64, for a [3, 12, 10] image and 5 classes:

        conv1 Conv2d(3, 8, 3, pad 1, no bias)  bn1  relu            [8, 12, 10]
        layer1.0 BasicBlock(8 -> 12, stride 2, downsample 1x1 + BN)  [12, 6, 5]
        mix   branch1 Conv2d(12, 4, 1) | branch2 Conv 1x1 (4), ReLU, Conv 3x3 (6)  [10, 6, 5]
        avgpool AdaptiveAvgPool2d(1)  flatten  fc Linear(10, 5)

    Tensors: the parameters and buffers under their state_dict names, input [3, 12, 10],
    class [1], saliency [12, 10], and for each layer L of TINY_LAYERS: `cam:L.weights`,
    `cam:L.coarse`, `cam:L.heat`.
    """
    from torchvision.models.resnet import BasicBlock

    torch.manual_seed(12)
    down = nn.Sequential(nn.Conv2d(8, 12, 1, stride=2, bias=False), nn.BatchNorm2d(12))
    model = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(3, 8, 3, padding=1, bias=False))
    model.add_module("bn1", nn.BatchNorm2d(8))
    model.add_module("relu", nn.ReLU())
    model.add_module("layer1", nn.Sequential(BasicBlock(8, 12, stride=2, downsample=down)))
    model.add_module("mix", Mix())
    model.add_module("avgpool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc", nn.Linear(10, 5))
    random_bn(model)
    model = model.double().eval()
    no_inplace(model)
    x = torch.randn(1, 3, 12, 10, dtype=torch.float64)
    # The first class whose Grad-CAM maps are all non-zero (an all-zero map tests little).
    cls = next(c for c in range(5) if all(hooked_cam(model, l, x, c)[1].abs().sum() > 0 for l in TINY_LAYERS))
    out = {k: v.detach().clone() for k, v in model.state_dict().items() if "num_batches" not in k}
    out["input"] = x[0].clone()
    out["class"] = torch.tensor([float(cls)], dtype=torch.float64)
    out["saliency"] = saliency_of(model, x, cls)
    for layer in TINY_LAYERS:
        w, c, h = hooked_cam(model, layer, x, cls)
        assert c.abs().sum() > 0, f"{layer}: an all-zero map would test little"
        out[f"cam:{layer}.weights"], out[f"cam:{layer}.coarse"], out[f"cam:{layer}.heat"] = w, c, h
    path = os.path.join(OUT, "tiny_resnet.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path)
    print("wrote", path, os.path.getsize(path), "bytes")


RESNET18_LAYERS = ["layer4", "layer3.1.conv2", "layer2.0.downsample"]


def resnet18(out_dir):
    """resnet18_explain.safetensors in out_dir: torchvision's resnet18 with random weights
    (seed 0, random BN statistics, as scripts/torchvision_weights.py --random 0) in float64,
    a random [3, 224, 224] input, the class it scores highest, saliency and Grad-CAM at
    RESNET18_LAYERS."""
    import torchvision_weights

    model = torchvision_weights.build("resnet18", seed=0).double().eval()
    no_inplace(model)
    torch.manual_seed(1)
    x = torch.randn(1, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        cls = int(model(x)[0].argmax())
    out = {k: v.detach().clone() for k, v in model.state_dict().items() if "num_batches" not in k}
    out["input"] = x[0].clone()
    out["class"] = torch.tensor([float(cls)], dtype=torch.float64)
    out["saliency"] = saliency_of(model, x, cls)
    for layer in RESNET18_LAYERS:
        w, c, h = hooked_cam(model, layer, x, cls)
        out[f"cam:{layer}.weights"], out[f"cam:{layer}.coarse"], out[f"cam:{layer}.heat"] = w, c, h
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "resnet18_explain.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path)
    print("wrote", path, os.path.getsize(path), "bytes; class", cls)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=["small", "tiny"], help="write only this committed fixture")
    p.add_argument("--resnet18", metavar="DIR", help="also write the ResNet-18 check into DIR")
    args = p.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if args.only in (None, "small"):
        main()
    if args.only in (None, "tiny"):
        tiny_resnet()
    if args.resnet18:
        resnet18(args.resnet18)
