#!/usr/bin/env python3
"""convnet against PyTorch on this machine, in one run: the table of issue 7.

    /root/torchenv/bin/python scripts/compare_pytorch.py                 # every row
    /root/torchenv/bin/python scripts/compare_pytorch.py --quick --rows lenet5_modern,resnet18:infer
    /root/torchenv/bin/python scripts/compare_pytorch.py --rows mnist

Optional for users (needs `pip install torch torchvision`); nothing in the crate depends on it.

For each row the convnet `bench` example (target/release/examples/bench) and the same step in
PyTorch run one after the other, each as its own process, so that each one's peak resident
memory (`ru_maxrss` of that process, through GNU time: /usr/bin/time) can be reported. Same settings on both
sides: f32, `--threads` threads (default 2), batch 8 at 224x224 unless the row says otherwise,
fixed pseudo-random inputs. A train step is forward, cross-entropy, backward, SGD (momentum 0.9,
lr 1e-4), zero_grad; inference is convnet's `Layer::infer` against PyTorch's `model.eval()`
under `torch.inference_mode()`. Each side prints the median of `--iters` timed iterations after
`--warmup` untimed ones.

The `mnist` row runs the whole main example (target/release/examples/mnist with its default
recipe) against the same recipe written in PyTorch below: LeNet-5 (modern), Adam 2e-3 with a
per-epoch cosine schedule to 0, batch 64, reshuffled every epoch, random shifts of up to 2
pixels (zero fill, before normalising with mean 0.1307 and std 0.3081), 10 epochs, test
evaluation (batch 500) and a checkpoint after every epoch, data read from data/mnist/*.gz.
It reports the wall time of each whole process and its final test accuracy.

Small models train as `Replicated` in convnet (`bench --replicas THREADS`: one replica per thread,
each on its share of the batch; the rows in `REPLICATED`, marked in the table), which is how the
crate trains them (the mnist example does the same); `--no-replicas` turns that off.

`--rounds N` runs each row's pair N times, convnet and PyTorch alternating, and reports each
side's median rate over the rounds (its peak RSS is the largest seen) and the smallest and
largest per-round ratio: on a shared machine whose speed drifts within minutes, one pair of
runs can land on a fast and a slow phase.

Rows: `MODEL` (every mode listed for it) or `MODEL:MODE`, comma-separated; `mnist` for the
recipe. `--quick` runs 3 timed iterations after 1 warm-up and a 1-epoch mnist recipe. `--f64`
also times convnet in f64 on each row (right after its f32 run) and prints a second table with
the f64/f32 time ratio.
"""
import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GNU_TIME = "/usr/bin/time"

# (model, mode, batch, side): the table of issue 7.
TABLE = [
    ("lenet5_modern", "train", 64, 28),
    ("lenet5_modern", "infer", 64, 28),
    ("alexnet", "train", 8, 227),
    ("alexnet", "infer", 8, 227),
    ("alexnet_torchvision", "train", 8, 224),
    ("vgg16", "train", 8, 224),
    ("vgg16", "infer", 8, 224),
    ("googlenet_torchvision", "train", 8, 224),
    ("googlenet_torchvision", "infer", 8, 224),
    ("resnet18", "train", 8, 224),
    ("resnet18", "infer", 8, 224),
    ("resnet50", "train", 8, 224),
    ("resnet50", "infer", 8, 224),
]

# Models whose convnet training runs one replica per thread (`bench --replicas`).
REPLICATED = {"lenet5", "lenet5_modern"}


# --------------------------------------------------------------------------------------------
# Running a child process and measuring it.

def run_measured(cmd, cwd=ROOT):
    """Runs `cmd`; returns (exit code, stdout, stderr, peak RSS in MiB, wall seconds).

    The peak RSS is measured by GNU time (`/usr/bin/time -f %M`), which waits for the command
    and reads its `ru_maxrss`. Reading `ru_maxrss` of a child forked from this Python process
    directly would not do: Linux counts the resident memory a process had before `exec` in its
    peak, so every child would inherit this process's size.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r") as rss:
        start = time.perf_counter()
        rc = subprocess.run([GNU_TIME, "-q", "-f", "%M", "-o", rss.name, *cmd], cwd=cwd,
                            stdout=out, stderr=err).returncode
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        kib = [l for l in rss.read().splitlines() if l.strip().isdigit()]
        peak = int(kib[-1]) / 1024.0 if kib else float("nan")
        return rc, out.read().decode(), err.read().decode(), peak, wall


def last_line_rate(stdout):
    """Images per second from the closing line `... median X ms/iter, Y img/s`."""
    line = stdout.strip().splitlines()[-1]
    return float(line.rsplit(",", 1)[1].split()[0]), line


def final_accuracy(stdout):
    """The percentage of the line `test accuracy: 99.34% (...)`."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("test accuracy:"):
            return float(line.split()[2].rstrip("%"))
    raise ValueError("no `test accuracy:` line")


# --------------------------------------------------------------------------------------------
# PyTorch workers (run in a child process: `--worker bench` or `--worker mnist`).

def torch_models(nn, torchvision):
    def lenet5_modern(classes):
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, classes))

    def alexnet(classes):
        # The course listing (src/zoo/alexnet.rs): one GPU, no groups, the paper's LRN.
        lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
        features = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), nn.MaxPool2d(3, 2), lrn(),
            nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2), lrn(),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
        classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, classes))
        return nn.Sequential(features, nn.Flatten(), classifier)

    m = torchvision.models
    return {
        "lenet5_modern": lenet5_modern,
        "alexnet": alexnet,
        "alexnet_torchvision": lambda c: m.alexnet(num_classes=c),
        "vgg16": lambda c: m.vgg16(num_classes=c),
        "googlenet_torchvision": lambda c: m.googlenet(
            num_classes=c, aux_logits=False, init_weights=True),
        "resnet18": lambda c: m.resnet18(num_classes=c),
        "resnet50": lambda c: m.resnet50(num_classes=c),
    }


def worker_bench(a):
    import torch
    import torchvision
    torch.set_num_threads(a.threads)
    nn = torch.nn
    classes = 10 if a.model.startswith("lenet") else 1000
    channels = 1 if a.model.startswith("lenet") else 3
    torch.manual_seed(0)
    model = torch_models(nn, torchvision)[a.model](classes)
    x = torch.rand(a.batch, channels, a.size, a.size) * 2 - 1
    y = (torch.arange(a.batch) * 7 + 3) % classes
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    if a.mode == "train":
        model.train()
    else:
        model.eval()
    times = []
    for i in range(a.warmup + a.iters):
        start = time.perf_counter()
        if a.mode == "train":
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
        else:
            with torch.inference_mode():
                model(x)
        ms = (time.perf_counter() - start) * 1e3
        if i >= a.warmup:
            times.append(ms)
        print(f"{'warm-up' if i < a.warmup else 'iter'} {i + 1}: {ms:.1f} ms", file=sys.stderr)
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    print(f"{a.model} {a.mode} batch {a.batch}: median {med:.1f} ms/iter, "
          f"{a.batch / (med / 1e3):.2f} img/s")


def read_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def worker_mnist(a):
    import numpy as np
    import torch
    import torchvision
    torch.set_num_threads(a.threads)
    nn = torch.nn
    start = time.perf_counter()
    d = ROOT / "data" / "mnist"
    to_tensor = lambda im: torch.from_numpy(im.astype(np.float32) / 255.0).unsqueeze(1)
    train_x = to_tensor(read_idx(d / "train-images-idx3-ubyte.gz"))
    train_y = torch.from_numpy(read_idx(d / "train-labels-idx1-ubyte.gz").astype(np.int64))
    test_x = to_tensor(read_idx(d / "t10k-images-idx3-ubyte.gz"))
    test_y = torch.from_numpy(read_idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    mean, std = 0.1307, 0.3081
    test_x = (test_x - mean) / std
    print(f"MNIST loaded in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    torch.manual_seed(a.seed)
    model = torch_models(nn, torchvision)["lenet5_modern"](10)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs, eta_min=0.0)
    gen = torch.Generator().manual_seed(a.seed)
    n, batch, shift = train_x.shape[0], 64, 2
    out_dir = Path(tempfile.mkdtemp(prefix="torch_mnist_"))
    acc = 0.0
    for epoch in range(a.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            b = idx.shape[0]
            # Shift by (dy, dx) in [-2, 2]^2 with zero fill: crop a 28x28 window out of the
            # image padded by 2, at offset 2 - d.
            padded = nn.functional.pad(train_x[idx], (shift,) * 4)
            oy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
            ox = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
            windows = padded.unfold(2, 28, 1).unfold(3, 28, 1)  # [b, 1, 5, 5, 28, 28], a view
            images = (windows[torch.arange(b), :, oy, ox] - mean) / std
            loss = nn.functional.cross_entropy(model(images), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for s in range(0, test_x.shape[0], 500):
                logits = model(test_x[s:s + 500])
                correct += int((logits.argmax(1) == test_y[s:s + 500]).sum())
        acc = 100.0 * correct / test_x.shape[0]
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()},
                   out_dir / "checkpoint.pt")
        print(f"epoch {epoch + 1}/{a.epochs}: test acc {acc:.2f}% "
              f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    print(f"test accuracy: {acc:.2f}% ({correct}/{test_x.shape[0]})")


# --------------------------------------------------------------------------------------------
# The comparison.

def parse_rows(spec):
    if not spec:
        return list(TABLE), True
    rows, mnist = [], False
    for item in spec.split(","):
        item = item.strip()
        if item == "mnist":
            mnist = True
            continue
        model, _, mode = item.partition(":")
        chosen = [r for r in TABLE if r[0] == model and (not mode or r[1] == mode)]
        if not chosen:
            known = sorted({f"{r[0]}:{r[1]}" for r in TABLE})
            sys.exit(f"error: no row `{item}`; rows are mnist, MODEL or MODEL:MODE with "
                     f"MODEL:MODE one of {', '.join(known)}")
        rows += [r for r in chosen if r not in rows]
    return rows, mnist


def fail(what, rc, out, err):
    sys.exit(f"error: {what} exited with {rc}\n{out[-2000:]}\n{err[-2000:]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default="", help="comma-separated rows (default: all, and mnist)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 10)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations (default 2)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1,
                   help="convnet/PyTorch pairs per row, alternating (default 1)")
    p.add_argument("--quick", action="store_true", help="3 iterations, 1-epoch mnist")
    p.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    p.add_argument("--no-replicas", action="store_true",
                   help="train every model as one replica (no `bench --replicas`)")
    p.add_argument("--f64", action="store_true",
                   help="also time convnet in f64 on each row (issue 7: within 2.5x of f32)")
    # Worker mode (internal): one PyTorch measurement in this process.
    p.add_argument("--worker", choices=["bench", "mnist", "version"], help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker == "bench":
        return worker_bench(a)
    if a.worker == "mnist":
        return worker_mnist(a)
    if a.worker == "version":
        import torch
        return print(torch.__version__)

    iters = a.iters or (3 if a.quick else 10)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    epochs = 1 if a.quick else 10
    rows, mnist = parse_rows(a.rows)
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--example", "bench",
                        "--example", "mnist"], cwd=ROOT, check=True)
    # cargo's own rule: CARGO_TARGET_DIR, when set, holds the build.
    examples = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "examples"
    me = [sys.executable, str(Path(__file__).resolve())]
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit(f"error: {GNU_TIME} (GNU time) is needed to measure peak memory")
    torch_version = subprocess.run([*me, "--worker", "version"], capture_output=True,
                                   text=True, check=True).stdout.strip()
    print(f"# torch {torch_version}, {a.threads} threads, f32, {iters} timed iterations "
          f"after {warmup} warm-up", file=sys.stderr)

    results = []
    for model, mode, batch, side in rows:
        common = ["--model", model, "--mode", mode, "--batch", str(batch), "--size", str(side),
                  "--iters", str(iters), "--warmup", str(warmup), "--threads", str(a.threads)]
        replicas = (a.threads if mode == "train" and model in REPLICATED and not a.no_replicas
                    else 1)
        mine = [*common, "--replicas", str(replicas)]
        rounds = []
        for _ in range(max(a.rounds, 1)):
            rc, out, err, rss_c, _ = run_measured([str(examples / "bench"), *mine,
                                                   "--dtype", "f32"])
            if rc != 0:
                fail(f"bench {model} {mode}", rc, out, err)
            rate_c, line_c = last_line_rate(out)
            rc, out, err, rss_t, _ = run_measured([*me, "--worker", "bench", *common])
            if rc != 0:
                fail(f"PyTorch {model} {mode}", rc, out, err)
            rate_t, line_t = last_line_rate(out)
            print(f"convnet: {line_c}   PyTorch: {line_t}", file=sys.stderr)
            rounds.append((rate_c, rate_t, rss_c, rss_t))
        rate_c = statistics.median(r[0] for r in rounds)
        rate_t = statistics.median(r[1] for r in rounds)
        rss_c, rss_t = max(r[2] for r in rounds), max(r[3] for r in rounds)
        spread = [r[0] / r[1] for r in rounds]
        rate_64 = None
        if a.f64:
            rc, out, err, _, _ = run_measured([str(examples / "bench"), *mine,
                                               "--dtype", "f64"])
            if rc != 0:
                fail(f"bench {model} {mode} f64", rc, out, err)
            rate_64, line_64 = last_line_rate(out)
            print(f"convnet f64: {line_64}", file=sys.stderr)
        shown = mode if replicas == 1 else f"{mode} ({replicas} replicas)"
        results.append((model, shown, batch, side, rate_c, rate_t, rss_c, rss_t, rate_64,
                        spread))

    if results:
        print(f"convnet against PyTorch {torch_version}, {a.threads} threads, f32, median of "
              f"{iters} iterations after {warmup} warm-up"
              + (f"; each side's median over {a.rounds} alternating rounds" if a.rounds > 1
                 else ""))
        print()
        many = a.rounds > 1
        print("| model | mode | convnet img/s | PyTorch img/s | ratio | "
              + ("ratio per round, min-max | " if many else "")
              + "convnet peak RSS MiB | PyTorch peak RSS MiB |")
        print("|---|---|---:|---:|---:|" + ("---:|" if many else "") + "---:|---:|")
        for model, mode, batch, side, rc_, rt, mc, mt, _, spread in results:
            per_round = f"{min(spread):.2f}-{max(spread):.2f} | " if many else ""
            print(f"| {model} (batch {batch}, {side}x{side}) | {mode} | {rc_:,.2f} | {rt:,.2f} "
                  f"| {rc_ / rt:.2f} | {per_round}{mc:,.0f} | {mt:,.0f} |")
        if a.f64:
            print()
            print("| model | mode | convnet f32 img/s | convnet f64 img/s | f64 time / f32 time |")
            print("|---|---|---:|---:|---:|")
            for model, mode, batch, side, rc_, _, _, _, r64, _ in results:
                print(f"| {model} (batch {batch}, {side}x{side}) | {mode} | {rc_:,.2f} "
                      f"| {r64:,.2f} | {rc_ / r64:.2f} |")

    if mnist:
        with tempfile.TemporaryDirectory(prefix="convnet_mnist_") as out_dir:
            cmd = [str(examples / "mnist"), "--threads", str(a.threads), "--out", out_dir]
            if epochs != 10:
                cmd += ["--epochs", str(epochs)]
            rc, out, err, rss_c, wall_c = run_measured(cmd)
        if rc != 0:
            fail("mnist example", rc, out, err)
        acc_c = final_accuracy(out)
        rc, out, err, rss_t, wall_t = run_measured(
            [*me, "--worker", "mnist", "--threads", str(a.threads), "--epochs", str(epochs)])
        if rc != 0:
            fail("PyTorch mnist recipe", rc, out, err)
        acc_t = final_accuracy(out)
        print()
        print(f"| MNIST recipe ({epochs} epoch{'s' if epochs > 1 else ''}, whole process) "
              "| convnet | PyTorch | ratio |")
        print("|---|---:|---:|---:|")
        print(f"| wall time, s | {wall_c:.1f} | {wall_t:.1f} | {wall_t / wall_c:.2f} |")
        print(f"| test accuracy, % | {acc_c:.2f} | {acc_t:.2f} | |")
        print(f"| peak RSS, MiB | {rss_c:,.0f} | {rss_t:,.0f} | |")


if __name__ == "__main__":
    main()
