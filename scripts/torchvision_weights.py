"""Saves a torchvision classifier's ImageNet weights as a safetensors file that convnet's zoo
model of the same name loads (`predict --weights`, `zoo forward --weights`).

Run: /root/torchenv/bin/python scripts/torchvision_weights.py resnet50 resnet50.safetensors

The pretrained weights are downloaded by torchvision (from download.pytorch.org, cached in
~/.cache/torch). `--random SEED` saves a randomly initialised model instead (no download), which
scripts/check_predict.py uses to compare convnet's predict example with torchvision.

Zoo names and their torchvision models: resnet18/34/50/101/152, vgg11/13/16/19 (and _bn),
alexnet_torchvision (torchvision's alexnet). The downloaded .pth file loads as well, without
this conversion: `predict --weights resnet50-0676ba61.pth`.

torchvision's pretrained GoogLeNet is not offered: it re-normalises its input inside the model
(transform_input=True), which convnet's googlenet_torchvision does not do.
"""

import argparse

import torch
import torchvision.models as tvm
from safetensors.torch import save_file

# convnet zoo name -> torchvision constructor name
MODELS = {
    "alexnet_torchvision": "alexnet",
    **{n: n for n in ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]},
    **{n: n for n in ["vgg11", "vgg13", "vgg16", "vgg19"]},
    **{n + "_bn": n + "_bn" for n in ["vgg11", "vgg13", "vgg16", "vgg19"]},
}


def build(zoo_name, seed=None):
    name = MODELS[zoo_name]
    if seed is None:
        return getattr(tvm, name)(weights="IMAGENET1K_V1").eval()
    torch.manual_seed(seed)
    model = getattr(tvm, name)(weights=None).eval()
    # Random BatchNorm statistics, so that a check exercises the running mean/var too.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", choices=sorted(MODELS))
    p.add_argument("out", help="the .safetensors file to write")
    p.add_argument("--random", type=int, metavar="SEED", help="random weights, no download")
    a = p.parse_args()
    model = build(a.model, a.random)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, a.out)
    n = sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    print(f"wrote {a.out}: {len(sd)} tensors, {n:,} values ({MODELS[a.model]}, "
          f"{'random seed %d' % a.random if a.random is not None else 'IMAGENET1K_V1'})")


if __name__ == "__main__":
    main()
