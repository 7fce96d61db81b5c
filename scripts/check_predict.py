"""Checks the predict example against torchvision end to end: the preprocessed tensor and the
top-5 of a whole ImageNet model.

Run: /root/torchenv/bin/python scripts/check_predict.py [--model resnet18] [IMAGE ...]

For each image (default: the PNG and JPEG fixtures of tests/fixtures/vision):
  1. torchvision's evaluation preprocessing (PIL decode, Resize(256), CenterCrop(224),
     ToTensor, Normalize(ImageNet)) is compared with `predict --save-input` (max abs diff);
  2. a torchvision model with random weights (seeded; pretrained weights cannot be downloaded
     here), saved by scripts/torchvision_weights.py, classifies the image in PyTorch and in
     `predict --weights`: the top-5 class indices must agree and the probabilities printed by
     predict must be within 1e-4 of PyTorch's softmax.
The weights go to a temporary folder (resnet18: 45 MB), not into the repository.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import torchvision_weights  # noqa: E402


def torchvision_input(path):
    pre = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    return pre(Image.open(path).convert("RGB")).unsqueeze(0)


def predict(binary, args):
    if binary:
        cmd = [binary] + args
    else:
        cmd = ["cargo", "run", "--release", "--quiet", "--example", "predict", "--"] + args
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"predict failed: {' '.join(args)}\n{out.stderr}")
    return out.stdout


def main():
    p = argparse.ArgumentParser()
    p.add_argument("images", nargs="*")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--predict", metavar="BINARY", help="a built predict example (default: cargo run)")
    a = p.parse_args()
    images = a.images or [
        os.path.join(ROOT, "tests", "fixtures", "vision", f) for f in ["photo.png", "photo.jpg"]
    ]
    model = torchvision_weights.build(a.model, a.seed)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, a.model + ".safetensors")
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, weights)
        for image in images:
            saved = os.path.join(tmp, "input.safetensors")
            out = predict(a.predict, ["--model", a.model, "--weights", weights, "--save-input", saved, image])
            x_tv = torchvision_input(image)
            x_ours = load_file(saved)["input"]
            diff = (x_ours - x_tv).abs()
            print(f"{os.path.basename(image)}: input {tuple(x_ours.shape)}, "
                  f"max |ours - torchvision| {diff.max():.4g}, mean {diff.mean():.3g}")
            with torch.no_grad():
                probs = torch.softmax(model(x_tv).double(), dim=1)[0]
            top = torch.topk(probs, 5)
            lines = [l for l in out.splitlines() if l[:1].isdigit() and ". " in l]
            print("  torchvision           | predict")
            for (p_tv, i_tv), line in zip(zip(top.values.tolist(), top.indices.tolist()), lines):
                rank, p_ours, i_ours = line.split()[:3]
                ok = int(i_ours) == i_tv and abs(float(p_ours) - p_tv) <= 1e-4
                failed |= not ok
                print(f"  {rank} {p_tv:.4f} {i_tv:<4}        | {line}{'' if ok else '   <-- differs'}")
            if len(lines) != 5:
                failed = True
                print(f"  expected 5 lines from predict, got:\n{out}")
    print("FAIL" if failed else "PASS")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
