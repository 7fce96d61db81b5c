"""Writes the 1,000 ImageNet class names that torchvision's classifiers output, one per line,
line i (0-based) being class i, to src/vision/imagenet_classes.txt.

Run: /root/torchenv/bin/python scripts/imagenet_classes.py

The names are torchvision's own (`ResNet50_Weights.IMAGENET1K_V1.meta["categories"]`, shared by
every ImageNet-1k weight set of torchvision); nothing is downloaded.
"""

import os

from torchvision.models import ResNet50_Weights

OUT = os.path.join(os.path.dirname(__file__), "..", "src", "vision", "imagenet_classes.txt")


def main():
    names = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    assert len(names) == 1000, len(names)
    assert all(n and "\n" not in n for n in names)
    with open(OUT, "w", encoding="utf-8") as f:
        for n in names:
            f.write(n + "\n")
    print(f"wrote {len(names)} names to {os.path.normpath(OUT)} (class 258: {names[258]})")


if __name__ == "__main__":
    main()
