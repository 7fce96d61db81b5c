#!/usr/bin/env python3
"""PyTorch checkpoints (`torch.save`) for convnet's `.pth` reader tests (run by hand; the crate
never needs Python). Writes tests/fixtures/pth/:

    /root/torchenv/bin/python scripts/make_pth_fixtures.py

* lenet5_mnist_f16.pth      the MNIST-trained LeNet-5 of tests/fixtures/lenet5_torch_mnist.safetensors
                            (zoo::lenet5_modern layout), every float tensor cast to float16.
* resnet_tiny.pth           a small ResNet built from torchvision's BasicBlock, batch-norm
                            statistics from two training steps; its state_dict is rewritten so
                            that some tensors are strided views: `fc.weight` is a transposed
                            (column-major) tensor, `conv1.weight` starts at an offset inside a
                            larger storage, `bn1.weight` and `bn1.bias` share one storage.
* resnet_tiny.safetensors   the same weights, written by safetensors.torch.
* resnet_tiny_bf16.pth      the model cast to bfloat16 (num_batches_tracked stays int64).
* resnet_tiny_f16.safetensors  the model cast to float16, as safetensors.
* resnet_tiny_deflated.pth  resnet_tiny.pth re-packed by Python's zipfile with deflate
                            compression (no zip64 records, no data descriptors).
* checkpoint_nested.pth     {"model": state_dict, "optimizer": SGD state_dict, "epoch": 3,
                            "note": ...}, as training scripts save, pickled with protocol 4.
* legacy.pth                torch.save(..., _use_new_zipfile_serialization=False): the pre-1.6
                            format the reader refuses with a clear message.
* torchscript.pt            torch.jit.save of a scripted Linear(2, 2): refused with a hint.
* evil_system.pth, evil_eval.pth  zip archives laid out like torch.save's whose data.pkl calls
                            os.system (protocol 2) / builtins.eval (protocol 4) when unpickled
                            by Python. Never load them
                            with torch.load(weights_only=False) or pickle.load.
* expected.safetensors      inputs and PyTorch's outputs (eval mode) for each model, in float32
                            and float64: lenet.input, lenet_f16.out32, lenet_f16.out64,
                            resnet.input, resnet.out32, resnet.out64, resnet_bf16.out32,
                            resnet_bf16.out64, resnet_f16.out32, resnet_f16.out64.
"""
import io
import os
import pickle
import zipfile
from collections import OrderedDict

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from torchvision.models.resnet import BasicBlock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "pth")
torch.set_num_threads(2)


def lenet5_modern():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def resnet_tiny():
    """conv-bn-relu stem, one identity BasicBlock(4), one projecting BasicBlock(4 -> 8, stride 2),
    global average pooling, fc 8 -> 10; the names of torchvision's ResNet."""
    down = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1, bias=False)),
        ("bn1", nn.BatchNorm2d(4)),
        ("relu", nn.ReLU()),
        ("layer1", nn.Sequential(BasicBlock(4, 4))),
        ("layer2", nn.Sequential(BasicBlock(4, 8, stride=2, downsample=down))),
        ("avgpool", nn.AdaptiveAvgPool2d((1, 1))),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(8, 10)),
    ]))


def outputs(model, x):
    """Eval-mode outputs in float32 and float64 of a model whose weights are whatever they are
    (float32, or rounded to a half type and widened back)."""
    m32 = model.float().eval()
    with torch.no_grad():
        y32 = m32(x.float()).clone()
        y64 = m32.double()(x.double()).clone()
    model.float()
    return y32, y64


def strided_state_dict(sd):
    """The same values, but some tensors are views with strides, offsets and shared storages."""
    sd = OrderedDict((k, v.clone()) for k, v in sd.items())
    w = sd["fc.weight"]  # [10, 8]
    sd["fc.weight"] = w.t().contiguous().t()  # strides (1, 10)
    c = sd["conv1.weight"]
    big = torch.cat([torch.full((37,), 99.0), c.flatten(), torch.full((5,), -99.0)])
    sd["conv1.weight"] = big[37:37 + c.numel()].view(c.shape)  # storage offset 37
    both = torch.cat([sd["bn1.weight"], sd["bn1.bias"]])
    sd["bn1.weight"], sd["bn1.bias"] = both[:4], both[4:]  # one storage, offsets 0 and 4
    assert not sd["fc.weight"].is_contiguous()
    assert sd["conv1.weight"].storage_offset() == 37
    assert sd["bn1.bias"].untyped_storage().data_ptr() == sd["bn1.weight"].untyped_storage().data_ptr()
    return sd


class Evil:
    """Unpickling this calls `func(*args)`: exactly what a reader must never do."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def evil_archive(path, payload, protocol):
    """A zip laid out like torch.save's, whose data.pkl runs `payload` when Python unpickles it."""
    data = pickle.dumps(OrderedDict([("weight", payload)]), protocol=protocol)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", data)
        z.writestr("evil/byteorder", "little")
        z.writestr("evil/version", "3\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(7)
    expected = {}

    # LeNet-5 trained on MNIST (the existing fixture), stored in float16.
    lenet = lenet5_modern()
    lenet.load_state_dict(load_file(os.path.join(ROOT, "tests/fixtures/lenet5_torch_mnist.safetensors")))
    lenet.half()
    torch.save(lenet.state_dict(), os.path.join(OUT, "lenet5_mnist_f16.pth"))
    x = torch.randn(3, 1, 28, 28, generator=gen)
    expected["lenet.input"] = x
    expected["lenet_f16.out32"], expected["lenet_f16.out64"] = outputs(lenet, x)

    # The tiny ResNet: random weights, batch-norm statistics from two training steps.
    torch.manual_seed(0)
    net = resnet_tiny()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.train()
    for _ in range(2):
        xb = torch.randn(4, 3, 12, 12, generator=gen)
        loss = net(xb).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # make the affine batch-norm parameters visibly non-trivial
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.add_(0.3 * torch.randn(m.weight.shape, generator=gen))
                m.bias.add_(0.3 * torch.randn(m.bias.shape, generator=gen))
    sd = net.state_dict()
    assert int(sd["bn1.num_batches_tracked"]) == 2
    x = torch.randn(2, 3, 12, 12, generator=gen)
    expected["resnet.input"] = x
    expected["resnet.out32"], expected["resnet.out64"] = outputs(net, x)

    torch.save(strided_state_dict(sd), os.path.join(OUT, "resnet_tiny.pth"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(OUT, "resnet_tiny.safetensors"))
    reloaded = torch.load(os.path.join(OUT, "resnet_tiny.pth"), weights_only=True)
    assert all(torch.equal(reloaded[k], sd[k]) for k in sd)

    torch.save({"model": sd, "optimizer": opt.state_dict(), "epoch": 3, "note": "tiny resnet, 2 steps"},
               os.path.join(OUT, "checkpoint_nested.pth"), pickle_protocol=4)

    with zipfile.ZipFile(os.path.join(OUT, "resnet_tiny.pth")) as src, \
            zipfile.ZipFile(os.path.join(OUT, "resnet_tiny_deflated.pth"), "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))

    bf16 = resnet_tiny()
    bf16.load_state_dict(sd)
    bf16.bfloat16()
    torch.save(bf16.state_dict(), os.path.join(OUT, "resnet_tiny_bf16.pth"))
    expected["resnet_bf16.out32"], expected["resnet_bf16.out64"] = outputs(bf16, x)

    f16 = resnet_tiny()
    f16.load_state_dict(sd)
    f16.half()
    save_file(f16.state_dict(), os.path.join(OUT, "resnet_tiny_f16.safetensors"))
    expected["resnet_f16.out32"], expected["resnet_f16.out64"] = outputs(f16, x)

    torch.save(OrderedDict([("weight", torch.arange(6.0).view(2, 3))]), os.path.join(OUT, "legacy.pth"),
               _use_new_zipfile_serialization=False)

    torch.jit.script(nn.Linear(2, 2)).save(os.path.join(OUT, "torchscript.pt"))

    evil_archive(os.path.join(OUT, "evil_system.pth"),
                 Evil(os.system, ("touch /tmp/convnet_pth_evil_system",)), 2)
    evil_archive(os.path.join(OUT, "evil_eval.pth"),
                 Evil(eval, ("open('/tmp/convnet_pth_evil_eval', 'w')",)), 4)

    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(OUT, "expected.safetensors"))
    total = 0
    for name in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, name))
        total += size
        print(f"{size:>8}  {name}")
    print(f"{total:>8}  total")


if __name__ == "__main__":
    main()
