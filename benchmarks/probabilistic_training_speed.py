"""Training-step speed of the probabilistic motion model, and of the window sums behind it.

Times, on the current machine and thread count, (i) the LNCC window sums as MONAI computes them
(:func:`monai.networks.layers.separable_filtering`, grouped 1-D convolutions) against
:func:`monai_cardiac.networks.layers.banded_separable_filtering` (banded matrix products), forward and backward,
on the maps one training step of the bundle filters (five ``(T - 1, 1, 96, 96)`` maps stacked, window 15), and
(ii) one whole training step of the bundle's network and loss (Adam, ``T`` frames of 96 x 96). Prints seconds
per call, median of ``--repeats`` after two warm-up calls. Usage::

    python benchmarks/probabilistic_training_speed.py --threads 2 --frames 25
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from monai.networks.layers import separable_filtering

from monai_cardiac.losses import ProbabilisticMotionLoss
from monai_cardiac.networks import ProbabilisticMotionModel
from monai_cardiac.networks.layers import banded_separable_filtering


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``call`` over ``repeats`` runs after two warm-up runs."""
    for _ in range(2):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--frames", type=int, default=25, help="frames per sequence, ED included")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)")

    maps = torch.rand(args.frames - 1, 5, 96, 96, requires_grad=True)
    window = torch.ones(15)
    for name, filtering in (("MONAI separable_filtering", separable_filtering),
                            ("banded_separable_filtering", banded_separable_filtering)):
        seconds = median_seconds(lambda f=filtering: f(maps, [window, window]).sum().backward(), args.repeats)
        print(f"window sums, forward + backward, {name}: {seconds:.4f} s")

    model = ProbabilisticMotionModel(spatial_size=(96, 96), encoder_norm="instance", initial_log_variance=-6.0)
    loss = ProbabilisticMotionLoss(lambda_=6e4, kernel_size=15)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    moving, fixed = torch.rand(1, 1, 96, 96), torch.rand(1, args.frames - 1, 96, 96)

    def training_step() -> None:
        optimizer.zero_grad()
        out = model(moving, fixed)
        loss(moving, fixed, out["ddf"], out["inverse_ddf"], out["mu"], out["logvar"])["loss"].backward()
        optimizer.step()

    print(f"training step ({args.frames} frames of 96 x 96): {median_seconds(training_step, args.repeats):.3f} s")


if __name__ == "__main__":
    main()
