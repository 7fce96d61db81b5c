"""Writes the image fixtures for tests/vision.rs and torchvision's preprocessing of them.

Run: /root/torchenv/bin/python scripts/make_vision_fixtures.py

Two synthetic "photos" (smooth gradients, soft shapes, fine texture and sensor-like noise (weaker in the PNG to keep it small), so
that the antialiasing filter has edges and texture to act on): a landscape PNG (360x280) and
a portrait JPEG (300x420, quality 90). Both are larger than 256 on the shorter side, so
Resize(256) downscales and its antialiasing matters.

For each, torchvision's ImageNet preprocessing (PIL decode, Resize(256), CenterCrop(224),
ToTensor, Normalize(ImageNet)) is stored in <name>.safetensors:
  sub          [3, 32, 32] float32: the output at rows and columns 0, 7, 14, ... (a subsample
               keeps the fixture small);
  channel_sum  [3] float64: the sum of each full 224x224 output channel.
  decoded_sum  [3] float64: the sum of each channel of PIL's decoded RGB bytes.
"""

import os

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save_file
from torchvision import transforms

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "vision")


def photo(width, height, seed, noise):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / width, y / height
    r = 0.55 + 0.35 * np.sin(3.1 * u + 1.3 * v) + 0.1 * np.cos(40 * u * v)
    g = 0.45 + 0.3 * np.cos(2.3 * v - 0.7 * u)
    b = 0.5 + 0.3 * np.sin(5.0 * (u - v))
    img = np.stack([r, g, b], axis=-1)
    for _ in range(6):  # soft-edged discs
        cx, cy, rad = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(15, 60)
        colour = rng.uniform(0, 1, 3)
        d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
        alpha = np.clip((rad - d) / 3.0, 0, 1)[..., None]
        img = img * (1 - alpha) + colour * alpha
    # A hard-edged stripe pattern (aliasing bait for a non-antialiased resize).
    stripes = ((x // 3 + y // 7) % 2 == 0) & (u > 0.7) & (v < 0.3)
    img[stripes] *= 0.6
    img += rng.normal(0, noise, img.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8), "RGB")


def expected(path, name):
    img = Image.open(path).convert("RGB")
    pre = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    out = pre(img)
    assert out.shape == (3, 224, 224), out.shape
    decoded = np.asarray(img).astype(np.float64)
    save_file(
        {
            "sub": out[:, ::7, ::7].contiguous().numpy().astype(np.float32),
            "channel_sum": out.double().sum(dim=(1, 2)).numpy(),
            "decoded_sum": decoded.sum(axis=(0, 1)),
        },
        os.path.join(OUT, name + ".safetensors"),
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    png = os.path.join(OUT, "photo.png")
    photo(360, 280, 1, 0.004).save(png, optimize=True)
    jpg = os.path.join(OUT, "photo.jpg")
    photo(300, 420, 2, 0.015).save(jpg, quality=90)
    expected(png, "photo_png")
    expected(jpg, "photo_jpg")
    total = 0
    for f in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, f))
        total += size
        print(f"{f}: {size} bytes")
    print(f"total {total} bytes")
    print("torch", torch.__version__, "PIL", Image.__version__)


if __name__ == "__main__":
    main()
