"""Does the graph compiler cost speed? mimicry's SNGAN-32 as archspec builds it against a hand-written twin.

Run from the repository root: ``.venv/bin/python benchmarks/bench_graph_forward.py [--repeats 21] [--batch 4]``.

1. Forward + backward of G, of D, and of D(G(z)), on the CPU at a small batch, for
   ``archspec.build("specs/zoo/mimicry_sngan32.yaml")`` (a GraphNetwork: blocks, shortcuts, repeats) against
   tests/zoo/mimicry_sngan32_twin.py holding the same weights. Both in training mode (batch statistics, one
   spectral-norm power iteration per forward, identical on both sides). A deep copy of the twin runs as a
   control: twin / copy is the noise floor of the machine at that moment. Each round times the three back to
   back, rotating which goes first; prints wall medians, the median of the rounds' paired wall ratios and the
   ratio of CPU-time medians (goal archspec / twin ≤ 1.02).
2. The Python cost per node: a tiny graph (51 nodes on [1, 8] tensors: a linear, 16 residual blocks of
   linear, ReLU, add, then view and tanh) run forward by the built GraphNetwork, by a straight-line forward
   calling the same module objects, and by an idiomatic hand-written forward (modules for the linears,
   ``F.relu`` and ``+`` for the rest); the differences divided by the node count.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "zoo" / "mimicry_sngan32.yaml"
TINY_BLOCKS = 16

# A graph of cheap nodes: every node's compute is a few hundred nanoseconds, so the time is the Python around it.
TINY = f"""\
name: tiny_graph
latent: 8
image: [2, 2, 2]
blocks:
  res:
    layers:
      - {{type: linear, out_features: 8}}
      - {{type: relu}}
      - {{type: add, from: [_, x]}}
generator:
  layers:
    - {{type: linear, out_features: 8}}
    - {{type: res, repeat: {TINY_BLOCKS}}}
    - {{type: view, shape: [2, 2, 2]}}
    - {{type: tanh}}
discriminator:
  layers:
    - {{type: flatten}}
    - {{type: linear, out_features: 1}}
train:
  loss: hinge
"""

Step = Callable[[], None]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=21, help="timed rounds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds per measurement first")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (1: steadiest on a shared box)"
    )
    parser.add_argument("--calls", type=int, default=200, help="tiny-graph forwards per timed round")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    import archspec
    from tests.zoo.mimicry_sngan32_twin import Discriminator, Generator, settle_spectral_norms
    from tests.zoo.twin import copy_weights

    torch.set_num_threads(args.threads)
    print(f"load average {_load()} at start; {os.cpu_count()} CPUs, torch {torch.__version__}")

    torch.manual_seed(0)
    gan = archspec.build(SPEC)
    g_twin, d_twin = Generator(), Discriminator()
    settle_spectral_norms(d_twin)
    copy_weights(g_twin, gan.generator)
    copy_weights(d_twin, gan.discriminator)
    nets = {
        "archspec": (gan.generator, gan.discriminator),
        "twin": (g_twin, d_twin),
        "copy": (copy.deepcopy(g_twin), copy.deepcopy(d_twin)),
    }
    for g, d in nets.values():
        g.train()
        d.train()

    rng = torch.Generator().manual_seed(1)
    z = torch.randn(args.batch, 128, generator=rng)
    x = torch.rand(args.batch, 3, 32, 32, generator=rng) * 2 - 1
    grad_image = torch.randn(args.batch, 3, 32, 32, generator=rng)
    _same_function(nets, z, x)

    def g_step(g: nn.Module, d: nn.Module) -> Step:
        def run() -> None:
            g.zero_grad(set_to_none=True)
            g(z).backward(grad_image)

        return run

    def d_step(g: nn.Module, d: nn.Module) -> Step:
        def run() -> None:
            d.zero_grad(set_to_none=True)
            d(x).sum().backward()

        return run

    def gan_step(g: nn.Module, d: nn.Module) -> Step:  # the generator's hinge update: -D(G(z)), both networks
        def run() -> None:
            g.zero_grad(set_to_none=True)
            d.zero_grad(set_to_none=True)
            (-d(g(z)).mean()).backward()

        return run

    print(
        f"\nmimicry_sngan32, forward + backward, batch {args.batch}, CPU, {args.threads} threads, "
        f"{args.repeats} rounds (+{args.warmup} warm-up), archspec against the hand-written twin"
    )
    print(
        f"  {'step':18} {'archspec ms':>11} {'twin ms':>9}  {'archspec/twin':>13} {'by CPU':>7}"
        f"  {'control twin/copy':>17}"
    )
    ratios, medians = {}, {}
    for label, make in (("G fwd+bwd", g_step), ("D fwd+bwd", d_step), ("D(G(z)) fwd+bwd", gan_step)):
        steps = {name: make(*pair) for name, pair in nets.items()}
        wall, cpu = paired(steps, args.repeats, args.warmup)
        ratio = _paired_ratio(wall, "archspec", "twin")
        ratios[label] = ratio
        medians[label] = statistics.median(wall["archspec"])
        by_cpu = statistics.median(cpu["archspec"]) / statistics.median(cpu["twin"])
        print(
            f"  {label:18} {statistics.median(wall['archspec']) * 1000:11.1f}"
            f" {statistics.median(wall['twin']) * 1000:9.1f}  {ratio:13.3f} {by_cpu:7.3f}"
            f"  {_paired_ratio(wall, 'twin', 'copy'):17.3f}"
        )
    worst = max(ratios.values())
    print(f"  goal archspec / twin ≤ 1.02 (worst paired ratio {worst:.3f}): {_met(worst <= 1.02)}")

    per_node_us = per_node(args.repeats, args.calls)
    result = archspec.check_file(SPEC)
    assert result.generator is not None and result.discriminator is not None
    g_nodes, d_nodes = len(result.generator.layers), len(result.discriminator.layers)
    both = (g_nodes + d_nodes) * per_node_us / 1000
    print(
        f"  so SNGAN's {g_nodes} + {d_nodes} nodes cost ≈ {both:.2f} ms of graph bookkeeping a forward: "
        f"{both / (medians['D(G(z)) fwd+bwd'] * 1000) * 100:.2f}% of D(G(z)) forward + backward at batch "
        f"{args.batch}"
    )
    print(f"\nload average {_load()} at the end")
    return 0


def per_node(repeats: int, calls: int) -> float:
    """The tiny graph's forward three ways; prints µs per call and the GraphNetwork's extra µs per node, and
    returns that over the idiomatic hand-written forward."""
    from archspec.check import check_text
    from archspec.modules import build

    torch.manual_seed(0)
    result = check_text(TINY)
    assert result.ok, [str(e) for e in result.errors]
    assert result.generator is not None and result.generator.graph is not None
    nodes = len(result.generator.graph.nodes)
    built = build(result).generator
    assert type(built).__name__ == "GraphNetwork", type(built)
    same_modules = SameModules(built)
    hand = HandWritten(built)
    z = torch.randn(1, 8)
    with torch.no_grad():
        expected = built(z)
        assert torch.equal(same_modules(z), expected) and torch.equal(hand(z), expected)

    def loop(net: nn.Module) -> Step:
        def run() -> None:
            with torch.no_grad():
                for _ in range(calls):
                    net(z)

        return run

    steps = {"GraphNetwork": loop(built), "same modules": loop(same_modules), "hand-written": loop(hand)}
    wall, _ = paired(steps, repeats * 2, 2)
    us = {name: statistics.median(w) / calls * 1e6 for name, w in wall.items()}
    print(
        f"\nper-node cost: a {nodes}-node graph on [1, 8] tensors, forward under no_grad, {calls} calls a round,"
        f" {repeats * 2} rounds"
    )
    for name, value in us.items():
        print(f"  {name:14} {value:8.1f} µs a forward")
    extra = {}
    for ref in ("same modules", "hand-written"):
        diffs = [(a - b) / calls / nodes * 1e6 for a, b in zip(wall["GraphNetwork"], wall[ref], strict=True)]
        extra[ref] = statistics.median(diffs)
        print(f"  GraphNetwork over {ref:13} {extra[ref]:6.2f} µs per node (median of paired rounds)")
    return extra["hand-written"]


class SameModules(nn.Module):
    """The tiny graph written out by hand, calling the built network's own module objects (ReLU and Add too)."""

    def __init__(self, built: nn.Module) -> None:
        super().__init__()
        self.net = built

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        net = self.net._modules
        h = net["0"](z)
        blocks = net["1"]._modules
        for k in range(TINY_BLOCKS):
            block = blocks[str(k)]._modules
            h = block["2"](block["1"](block["0"](h)), h)
        return net["3"](net["2"](h))


class HandWritten(nn.Module):
    """The tiny graph as one would write it: modules for the linears, functions for the rest."""

    def __init__(self, built: nn.Module) -> None:
        super().__init__()
        self.inp = built._modules["0"]
        blocks = built._modules["1"]._modules
        self.blocks = nn.ModuleList(blocks[str(k)]._modules["0"] for k in range(TINY_BLOCKS))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(z)
        for linear in self.blocks:
            h = F.relu(linear(h)) + h
        return torch.tanh(h.view(-1, 2, 2, 2))


def paired(steps: dict[str, Step], repeats: int, warmup: int) -> tuple[dict[str, list[float]], ...]:
    """Wall and process-CPU seconds of each step, rounds interleaved, the order rotating round by round."""
    for _ in range(warmup):
        for run in steps.values():
            run()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for i in range(repeats):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def _paired_ratio(wall: dict[str, list[float]], a: str, b: str) -> float:
    """The median of each round's ratio: both ran within moments of each other, under the same load."""
    return statistics.median(x / y for x, y in zip(wall[a], wall[b], strict=True))


def _same_function(nets: dict[str, tuple[nn.Module, nn.Module]], z: torch.Tensor, x: torch.Tensor) -> None:
    """Both pairs compute the same thing (eval mode, so nothing they hold changes)."""
    outs = []
    with torch.no_grad():
        for g, d in nets.values():
            g.eval()
            d.eval()
            outs.append((g(z), d(x)))
            g.train()
            d.train()
    (ga, da), (gb, db), *_ = outs
    assert torch.allclose(ga, gb, atol=1e-5) and torch.allclose(da, db, rtol=1e-4, atol=1e-4)


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    sys.exit(main())
