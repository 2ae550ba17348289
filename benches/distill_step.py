"""PyTorch eager counterpart of `donna bench distill`: one distillation training step of a
block option (forward, NSR loss, backward, AdamW step), built from the same layer list that
donna builds, on the same batch shape, threads and memory format.

Usage: python distill_step.py SPEC.json   (written by `donna bench distill --pytorch PYTHON`)
Prints one JSON line: {"images_per_second": ..., "torch": ..., "threads": ...}.
"""
import json
import sys
import time

import torch
import torch.nn as nn


def act(name):
    return {"relu": nn.ReLU(), "swish": nn.SiLU(), "silu": nn.SiLU(), "gelu": nn.GELU(), "none": nn.Identity()}[name]


class ConvBn(nn.Sequential):
    def __init__(self, cin, cout, k, stride, groups, a):
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act(a))


class SqueezeExcite(nn.Module):
    def __init__(self, channels, squeeze, a):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = act(a)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class InvertedResidual(nn.Module):
    """donna's `mbconv` and `fused_mbconv` (plugins/layers/src/mbconv.rs)."""

    def __init__(self, kind, cin, s):
        super().__init__()
        out, k, e, stride = s["out"], s["k"], s["e"], s.get("stride", 1)
        se, a = s.get("se", False), s.get("act", "relu")
        hidden = cin * e
        units = []
        if kind == "mbconv":
            if e != 1:
                units.append(ConvBn(cin, hidden, 1, 1, 1, a))
            units.append(ConvBn(hidden, hidden, k, stride, hidden, a))
            mid = hidden
        elif e == 1:
            units.append(ConvBn(cin, out, k, stride, 1, a))
            mid = out
        else:
            units.append(ConvBn(cin, hidden, k, stride, 1, a))
            mid = hidden
        if se:
            units.append(SqueezeExcite(mid, max(cin // 4, 1), a))
        if kind == "mbconv" or e != 1:
            units.append(ConvBn(mid, out, 1, 1, 1, "none"))
        self.body = nn.Sequential(*units)
        self.residual = stride == 1 and cin == out

    def forward(self, x):
        y = self.body(x)
        return y + x if self.residual else y


def build(layers, cin):
    mods = []
    for layer in layers:
        kind, s = layer["kind"], layer["settings"]
        if kind in ("mbconv", "fused_mbconv"):
            mods.append(InvertedResidual(kind, cin, s))
            cin = s["out"]
        else:
            raise SystemExit(f"distill_step.py: layer type {kind} is not mirrored here")
    return nn.Sequential(*mods)


def nsr(student, teacher, floor):
    err = (student - teacher).pow(2).mean((0, 2, 3))
    var = teacher.var((0, 2, 3), unbiased=False)
    return (err / var.clamp_min(var.mean() * floor + 1e-12)).mean()


def main():
    spec = json.load(open(sys.argv[1]))
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    b, (c, h, w) = spec["batch"], spec["input"]
    net = build(spec["layers"], c).to(memory_format=torch.channels_last)
    x = torch.randn(b, c, h, w).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = torch.randn_like(net(x))
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.0)

    def step():
        opt.zero_grad()
        loss = nsr(net(x), y, spec["variance_floor"])
        loss.backward()
        opt.step()

    for _ in range(spec["warmup"]):
        step()
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    elapsed = time.perf_counter() - start
    print(json.dumps({"images_per_second": spec["steps"] * b / elapsed, "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
