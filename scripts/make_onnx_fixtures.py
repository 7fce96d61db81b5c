#!/usr/bin/env python3
"""ONNX models for convnet's `convnet::onnx` importer tests (run by hand; the crate never needs
Python). Writes tests/fixtures/onnx/:

    /root/torchenv/bin/pip install onnx onnxruntime onnxscript
    /root/torchenv/bin/python scripts/make_onnx_fixtures.py

Exported with the classic TorchScript exporter (`torch.onnx.export(..., dynamo=False)`,
opset 17), batch axis symbolic (`dynamic_axes`), model in eval mode:

* lenet5.onnx         zoo::lenet5_modern (Conv-ReLU-MaxPool x2, Conv, Flatten, Gemm x2) with the
                      MNIST-trained weights of tests/fixtures/lenet5_torch_mnist.safetensors.
* allops.onnx         a small net that uses every operator the importer maps: Conv (padding,
                      stride, dilation, groups, no bias), Relu, LeakyRelu, Sigmoid, Tanh, LRN,
                      MaxPool (ceil_mode), AveragePool (pads, count_include_pad=0),
                      GlobalAveragePool, BatchNormalization, Concat (channels and features),
                      Add, Flatten, Reshape fed by exporter shape arithmetic
                      (`x.view(x.size(0), -1)`: Shape, Gather, Unsqueeze, Concat, Constant),
                      Gemm, MatMul + Add, Softmax. The exporter drops Dropout in eval mode, so
                      a Dropout node (ratio as an input, opset >= 12) and an Identity node are
                      spliced in after export with onnx.helper; both are the identity in
                      inference, so PyTorch's output stays the expected one. nn.LocalResponseNorm
                      has no ONNX symbolic (the exporter decomposes it into ~40 nodes with an
                      If), so the net calls it through an autograd.Function whose symbolic
                      emits the standard LRN node while exporting (forward: F.local_response_norm,
                      which the net calls directly outside export).
* expected.safetensors  float32 tensors:
    lenet5.input [3,1,28,28], lenet5.output [3,10]
    allops.input [2,3,15,15], allops.output [2,10] (softmax probabilities),
    allops.r [2,10]: a fixed weighting; loss = sum(output * r), in eval mode;
    allops.grad_input [2,3,15,15]: dloss/dinput from PyTorch autograd;
    allops.grad.<initializer> : dloss/d(initializer) for every weight initializer.
* handmade.onnx       built with onnx.helper (opset 13) to reach attributes PyTorch never
                      emits: Conv auto_pad=SAME_UPPER, Gemm with alpha, beta and transB=0,
                      Dropout with a ratio attribute-free input, Identity, Reshape to a
                      constant [0, -1] (a flatten), Softmax axis -1. Weights live in
                      handmade.onnx.data (external data, data_location=EXTERNAL).
  handmade.input [2,2,5,5], handmade.output: expected output from onnx's reference evaluator
  (onnx.reference.ReferenceEvaluator, an implementation independent of PyTorch and convnet).
* interop.onnx        exported by PyTorch with symbolic batch, height and width: nn.ZeroPad2d
                      with uneven sides (an ONNX Pad node), a Conv with padding="same" and an
                      even kernel (asymmetric padding), per-channel and scalar constants added
                      and subtracted (broadcasting Add/Sub), Concat along the width, a view that
                      merges H and W (Reshape fed by Shape arithmetic), Softmax over channels of
                      a 4-D map, GlobalAveragePool, Flatten, Gemm and LogSoftmax.
  interop.input [2,3,9,11] / interop.output, and interop.input_b [1,3,12,8] /
  interop.output_b: the same file at another image size (PyTorch's outputs; onnxruntime
  agrees within 1e-5, checked when the script runs).
* interop_dynamo.onnx the same net and weights through the dynamo exporter (`dynamo=True`,
                      torch.onnx.export's default since torch 2.9; needs onnxscript): opset 20,
                      the ZeroPad2d folded into Conv's uneven pads, GlobalAveragePool written
                      as ReduceMean over H and W; expected outputs are interop's.
* padded.onnx         built with onnx.helper (opset 11), attributes PyTorch never emits and the
                      asymmetric cases of TF-converted models: Conv auto_pad=SAME_LOWER with an
                      odd total, MaxPool SAME_UPPER, AveragePool with explicit uneven pads for
                      both count_include_pad values, MaxPool with uneven pads and ceil_mode, a
                      Pad node with constant_value, Slice/Mul/Div shape arithmetic into a
                      Reshape that merges H and W, MatMul without bias, Softmax (opset 11).
  padded.input [2,3,8,8], padded.output: onnxruntime's output (the onnx reference evaluator
  agrees within 1e-5, checked when the script runs).
"""
import os

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "onnx")
OPSET = 17


def export(model, x, path):
    torch.onnx.export(
        model,
        (x,),
        path,
        dynamo=False,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
    )
    onnx.checker.check_model(onnx.load(path))


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


class LrnFn(torch.autograd.Function):
    """F.local_response_norm, exported as one standard ONNX LRN node."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size, alpha, beta, k):
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class AllOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_a = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4)
        self.conv_b = nn.Conv2d(8, 8, 1, bias=False)
        self.conv_c = nn.Conv2d(8, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(20)
        self.conv_d = nn.Conv2d(20, 16, 3, padding=1)
        self.fc1 = nn.Linear(16 * 4 * 4 + 16, 32)
        self.w2 = nn.Parameter(torch.randn(32, 10) * 0.2)
        self.b2 = nn.Parameter(torch.randn(10) * 0.1)

    def forward(self, x):
        c = F.relu(self.conv1(x))                                     # [8,15,15]
        if torch.onnx.is_in_onnx_export():
            c = LrnFn.apply(c, 3, 1e-2, 0.75, 1.5)
        else:  # the same function, differentiable
            c = F.local_response_norm(c, 3, 1e-2, 0.75, 1.5)
        a = F.leaky_relu(self.conv_a(c), 0.1)                         # [8,15,15]
        b = torch.sigmoid(self.conv_b(c))                             # [8,15,15]
        s = a + b                                                     # Add
        t = torch.tanh(self.conv_c(c))                                # [4,8,8]
        m = F.max_pool2d(s, 2, 2, ceil_mode=True)                     # [8,8,8] (7.5 -> 8)
        p = F.avg_pool2d(s, 3, 2, padding=1, count_include_pad=False)  # [8,8,8]
        h = self.bn(torch.cat([t, m, p], 1))                          # [20,8,8]
        h = F.max_pool2d(F.relu(self.conv_d(h)), 2)                   # [16,4,4]
        f = h.view(h.size(0), -1)                                     # [256] via Shape..Reshape
        g = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)             # [16] GlobalAveragePool
        z = F.relu(self.fc1(torch.cat([f, g], 1)))                    # Concat, Gemm
        z = torch.matmul(z, self.w2) + self.b2                        # MatMul + Add
        return torch.softmax(z, 1)


def splice_dropout_identity(path):
    """Inserts Dropout(ratio=0.25) and Identity before the first Gemm (inference identities)."""
    m = onnx.load(path)
    nodes = list(m.graph.node)
    i = next(k for k, n in enumerate(nodes) if n.op_type == "Gemm")
    gemm = nodes[i]
    src = gemm.input[0]
    ratio = helper.make_node("Constant", [], ["dropout_ratio"], name="/dropout/Ratio",
                             value=numpy_helper.from_array(np.array(0.25, np.float32)))
    drop = helper.make_node("Dropout", [src, "dropout_ratio"], ["dropped"], name="/dropout/Dropout")
    ident = helper.make_node("Identity", ["dropped"], ["identity_out"], name="/identity/Identity")
    gemm.input[0] = "identity_out"
    del m.graph.node[:]
    m.graph.node.extend(nodes[:i] + [ratio, drop, ident] + nodes[i:])
    onnx.checker.check_model(m)
    onnx.save(m, path)


def handmade(out_dir):
    rng = np.random.default_rng(7)
    w1 = (rng.standard_normal((4, 2, 3, 3)) * 0.3).astype(np.float32)
    b1 = (rng.standard_normal(4) * 0.1).astype(np.float32)
    wg = (rng.standard_normal((4 * 3 * 3, 6)) * 0.2).astype(np.float32)  # [K, N], transB = 0
    cg = (rng.standard_normal((1, 6)) * 0.1).astype(np.float32)           # broadcast [1, N]
    inits = [
        numpy_helper.from_array(w1, "conv.weight"),
        numpy_helper.from_array(b1, "conv.bias"),
        numpy_helper.from_array(wg, "fc.weight"),
        numpy_helper.from_array(cg, "fc.bias"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], name="conv",
                         kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Identity", ["r"], ["i"], name="identity"),
        helper.make_node("Reshape", ["i", "flat_shape"], ["f"], name="flatten"),
        helper.make_node("Dropout", ["f"], ["d"], name="dropout"),
        helper.make_node("Gemm", ["d", "fc.weight", "fc.bias"], ["g"], name="fc",
                         alpha=0.5, beta=2.0, transB=0),
        helper.make_node("Softmax", ["g"], ["output"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "handmade",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 2, 5, 5])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 6])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    y = ReferenceEvaluator(model).run(None, {"input": x})[0]
    path = os.path.join(out_dir, "handmade.onnx")
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="handmade.onnx.data", size_threshold=0)
    onnx.checker.check_model(path)
    return torch.from_numpy(x), torch.from_numpy(y)


class Interop(nn.Module):
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 0, 2, 1))                     # left, right, top, bottom
        self.conv1 = nn.Conv2d(3, 6, 3)
        self.conv2 = nn.Conv2d(6, 6, 2, padding="same")           # even kernel: pads 0 / 1
        self.shift = nn.Parameter(torch.randn(1, 6, 1, 1) * 0.3)  # broadcast over N, H, W
        self.conv3 = nn.Conv2d(12, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        a = torch.relu(self.conv1(self.pad(x)))
        b = self.conv2(a) + self.shift - 0.25                     # Add [1,C,1,1], Sub scalar
        c = torch.cat([a, b], 3)                                  # along the width
        h = torch.tanh(self.conv3(torch.cat([c, c], 1)))
        s = torch.softmax(h, 1)                                   # over channels, 4-D
        g = torch.flatten(F.adaptive_avg_pool2d(s, 1), 1)         # GlobalAveragePool, Flatten
        return F.log_softmax(self.fc(g), 1)


def export_interop(expected):
    torch.manual_seed(2)
    net = Interop().eval()
    x = torch.randn(2, 3, 9, 11)
    xb = torch.randn(1, 3, 12, 8)
    path = os.path.join(OUT, "interop.onnx")
    torch.onnx.export(
        net, (x,), path, dynamo=False, opset_version=OPSET,
        input_names=["input"], output_names=["output"],
        dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                      "output": {0: "batch"}},
    )
    onnx.checker.check_model(onnx.load(path))
    print("interop.onnx operators:",
          ", ".join(sorted({n.op_type for n in onnx.load(path).graph.node})))
    # The same net through the dynamo exporter (torch.onnx.export's default since torch 2.9):
    # opset 20, the zero padding folded into Conv's pads, GlobalAveragePool as ReduceMean.
    dyn_path = os.path.join(OUT, "interop_dynamo.onnx")
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height", min=4),
            3: torch.export.Dim("width", min=4)}
    torch.onnx.export(net, (x,), dyn_path, dynamo=True, input_names=["input"],
                      output_names=["output"], dynamic_shapes={"x": dims})
    onnx.checker.check_model(onnx.load(dyn_path))
    print("interop_dynamo.onnx operators:",
          ", ".join(sorted({n.op_type for n in onnx.load(dyn_path).graph.node})))
    import onnxruntime as ort
    sessions = [ort.InferenceSession(p) for p in (path, dyn_path)]
    with torch.no_grad():
        for key, inp in [("", x), ("_b", xb)]:
            y = net(inp)
            for sess in sessions:
                got = sess.run(None, {"input": inp.numpy()})[0]
                assert np.abs(got - y.numpy()).max() < 1e-5, "onnxruntime disagrees"
            expected["interop.input" + key] = inp
            expected["interop.output" + key] = y


def padded(expected):
    """Asymmetric padding and the other cases PyTorch's exporter never writes."""
    rng = np.random.default_rng(11)
    f = np.float32
    w1 = (rng.standard_normal((4, 3, 2, 2)) * 0.4).astype(f)
    b1 = (rng.standard_normal(4) * 0.1).astype(f)
    w2 = (rng.standard_normal((4, 16, 3, 3)) * 0.2).astype(f)
    w3 = (rng.standard_normal((4, 4, 2, 2)) * 0.3).astype(f)
    wfc = (rng.standard_normal((4 * 3 * 3, 3)) * 0.3).astype(f)
    inits = [
        numpy_helper.from_array(w1, "c1.weight"),
        numpy_helper.from_array(b1, "c1.bias"),
        numpy_helper.from_array(w2, "c2.weight"),
        numpy_helper.from_array(w3, "c3.weight"),
        numpy_helper.from_array(wfc, "fc.weight"),
        numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64), "pads"),
        numpy_helper.from_array(np.array(0.5, f), "pad_value"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([4], np.int64), "four"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
    ]
    nodes = [
        # 8x8 input. SAME_LOWER, kernel 2, stride 1: total padding 1, all of it before.
        helper.make_node("Conv", ["input", "c1.weight", "c1.bias"], ["a"], name="c1",
                         kernel_shape=[2, 2], auto_pad="SAME_LOWER"),               # [4,8,8]
        # SAME_UPPER, kernel 3, stride 2 on 8: total 1, after.
        helper.make_node("MaxPool", ["a"], ["m"], name="max_same",
                         kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),  # [4,4,4]
        helper.make_node("AveragePool", ["a"], ["p0"], name="avg_excl",
                         kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1],
                         count_include_pad=0),                      # TF's SAME (ceil)                                        # [4,4,4]
        helper.make_node("AveragePool", ["a"], ["p1"], name="avg_incl",
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 0, 1],
                         count_include_pad=1),                                        # [4,4,4]
        helper.make_node("Pad", ["a", "pads", "pad_value"], ["ap"], name="pad",
                         mode="constant"),                                            # [4,9,9]
        helper.make_node("MaxPool", ["ap"], ["mc"], name="max_ceil",
                         kernel_shape=[2, 2], strides=[2, 2], pads=[1, 0, 0, 0],
                         ceil_mode=1),                                                # [4,5,5]
        helper.make_node("Conv", ["mc", "c3.weight"], ["e"], name="c3",
                         kernel_shape=[2, 2]),                                        # [4,4,4]
        helper.make_node("Concat", ["m", "p0", "p1", "e"], ["cat"], name="cat", axis=1),  # [16,4,4]
        helper.make_node("Conv", ["cat", "c2.weight"], ["d"], name="c2",
                         kernel_shape=[3, 3], pads=[0, 0, 1, 1]),                     # [4,3,3]
        # Shape arithmetic: [N, 4, 3, 3] -> [N, 4, 9] via Shape, Slice, Mul, Concat.
        helper.make_node("Shape", ["d"], ["ds"], name="shape"),
        helper.make_node("Slice", ["ds", "two", "four"], ["hw"], name="slice_hw"),    # [3, 3]
        helper.make_node("Slice", ["hw", "one", "two"], ["wv"], name="slice_w"),      # [3]
        helper.make_node("Slice", ["hw", "one", "two"], ["wv2"], name="slice_w2"),
        helper.make_node("Mul", ["wv", "wv2"], ["hw9"], name="mul"),                  # [9]
        helper.make_node("Div", ["four", "one"], ["c4"], name="div"),                 # [4]
        helper.make_node("Slice", ["ds", "one", "one"], ["empty"], name="slice_empty"),
        helper.make_node("Constant", [], ["zero"], name="zero",
                         value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Concat", ["zero", "c4", "hw9", "empty"], ["target"], name="target",
                         axis=0),
        helper.make_node("Reshape", ["d", "target"], ["r"], name="merge_hw"),        # [N,4,9]
        helper.make_node("Flatten", ["r"], ["fl"], name="flatten", axis=1),          # [N,36]
        helper.make_node("MatMul", ["fl", "fc.weight"], ["z"], name="fc"),
        helper.make_node("Identity", ["z"], ["z2"], name="id"),
        helper.make_node("Softmax", ["z2"], ["output"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "padded",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    x = rng.standard_normal((2, 3, 8, 8)).astype(f)
    import onnxruntime as ort
    path = os.path.join(OUT, "padded.onnx")
    onnx.save(model, path)
    y = ort.InferenceSession(path).run(None, {"input": x})[0]
    ref = ReferenceEvaluator(model).run(None, {"input": x})[0]
    assert np.abs(ref - y).max() < 1e-5, "the reference evaluator disagrees with onnxruntime"
    expected["padded.input"] = torch.from_numpy(x)
    expected["padded.output"] = torch.from_numpy(y)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    expected = {}

    net = lenet5()
    state = load_file(os.path.join(ROOT, "tests", "fixtures", "lenet5_torch_mnist.safetensors"))
    net.load_state_dict(state)
    net.eval()
    x = torch.rand(3, 1, 28, 28)
    export(net, x, os.path.join(OUT, "lenet5.onnx"))
    with torch.no_grad():
        expected["lenet5.input"] = x
        expected["lenet5.output"] = net(x)

    torch.manual_seed(1)
    net = AllOps()
    # Non-trivial batch-norm statistics, then evaluation mode.
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
        net.bn.weight.uniform_(0.5, 1.5)
        net.bn.bias.uniform_(-0.2, 0.2)
    net.eval()
    x = torch.randn(2, 3, 15, 15)
    path = os.path.join(OUT, "allops.onnx")
    export(net, x, path)
    splice_dropout_identity(path)
    ops = sorted({n.op_type for n in onnx.load(path).graph.node})
    print("allops.onnx operators:", ", ".join(ops))
    r = torch.randn(2, 10)
    xg = x.clone().requires_grad_(True)
    out = net(xg)
    (out * r).sum().backward()
    expected["allops.input"] = x
    expected["allops.output"] = out.detach()
    expected["allops.r"] = r
    expected["allops.grad_input"] = xg.grad
    for name, p in net.named_parameters():
        expected["allops.grad." + name] = p.grad.clone()

    x, y = handmade(OUT)
    expected["handmade.input"] = x
    expected["handmade.output"] = y

    export_interop(expected)
    padded(expected)

    save_file({k: v.contiguous().float() for k, v in expected.items()},
              os.path.join(OUT, "expected.safetensors"))
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
