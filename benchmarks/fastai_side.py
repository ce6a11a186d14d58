"""The fastai half of `bench_fastai.py`: one from-scratch training run under a wall-time budget.

Runs in its own venv (`make bench-fastai` creates `.venv-fastai` with torch, fastai and timm),
as a subprocess of `bench_fastai.py`, which writes the image folders and reads the JSON this
script prints. What a fastai practitioner does with a network that has no pretrained weights:

    dls = ImageDataLoaders.from_folder(root, train="train", valid="valid", bs=32)
    learn = vision_learner(dls, "mobilenetv3_small_100", pretrained=False, metrics=accuracy)
    # (or Learner(dls, model, metrics=accuracy) for a hand-written torch model)
    lr = learn.lr_find().valley
    learn.fit_one_cycle(n_epochs, lr)

`fine_tune` is fastai's recipe for a *pretrained* body (one frozen epoch, then unfrozen ones with
discriminative rates); on a random body fastai's docs and course use `fit_one_cycle`. The epoch
count is the one that fills the budget, from the time per batch that the LR finder measured
(its 100 batches count against the budget, as the practitioner's time). A callback records
(wall seconds, CPU seconds of this process, validation accuracy) after every epoch and stops the
run when another epoch would not end within the budget, counted on `--clock` (`cpu`: process CPU
time, robust on a shared machine; `wall`). Nothing is downloaded: timm's `pretrained=False`.

Usage: python fastai_side.py ROOT ARCH --budget 60 --clock cpu --threads 2 --seed 0 (prints one JSON line).
"""

import argparse
import json
import math
import time
from pathlib import Path


def bird_cnn(num_classes, size):
    """bird_classifier's layers in torch: 5 x (conv3x3 no bias, BatchNorm, ReLU, max-pool 2), flatten,
    dense 256 + ReLU, dropout 0.5, dense (the zoo config `bird_classifier`)."""
    from torch import nn

    layers, channels = [], 3
    for filters in (32, 64, 128, 256, 256):
        layers += [
            nn.Conv2d(channels, filters, 3, padding=1, bias=False),
            nn.BatchNorm2d(filters, momentum=0.1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        channels = filters
    side = size // 32
    layers += [
        nn.Flatten(),
        nn.Linear(channels * side * side, 256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(256, num_classes),
    ]
    return nn.Sequential(*layers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder with train/, valid/ and test/ image folders")
    parser.add_argument("arch", help="a timm name (vision_learner, fastai's head) or 'bird_cnn' (plain Learner)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds for learner, LR finder and fit")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="what the budget counts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    from fastai.callback.core import Callback, CancelFitException
    from fastai.learner import Learner, Recorder
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed
    from fastai.vision.all import ImageDataLoaders, get_image_files, vision_learner

    root = Path(args.root)
    set_seed(args.seed, reproducible=True)
    dls = ImageDataLoaders.from_folder(
        root, train="train", valid="valid", bs=args.batch_size, num_workers=0, seed=args.seed
    )
    size = dls.one_batch()[0].shape[-1]

    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    class Budget(Callback):
        """Records (wall s, CPU s, validation accuracy) per epoch; stops when the next epoch would overrun."""

        order = Recorder.order + 1

        def __init__(self, budget):
            self.budget, self.curve, self.last = budget, [], clock() - start

        def after_epoch(self):
            wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
            now = cpu if args.clock == "cpu" else wall
            self.curve.append((round(wall, 2), round(cpu, 2), float(self.recorder.values[-1][-1])))  # accuracy
            stop, self.last = now + (now - self.last) > self.budget, now
            if stop:
                raise CancelFitException()

    wall_start, cpu_start = time.perf_counter(), time.process_time()
    start = clock()
    if args.arch == "bird_cnn":
        learn = Learner(dls, bird_cnn(dls.c, size), metrics=accuracy)
        recipe = "Learner(dls, bird_cnn)"
    else:
        learn = vision_learner(dls, args.arch, pretrained=False, metrics=accuracy)
        recipe = f"vision_learner(dls, {args.arch!r}, pretrained=False)"
    learn.recorder.silent = True
    find_start = clock()
    with learn.no_bar(), learn.no_logging():
        lr = float(learn.lr_find(show_plot=False).valley)
    finder_seconds = clock() - find_start
    per_batch = finder_seconds / 100  # lr_find's num_it
    per_epoch = per_batch * (len(dls.train) + len(dls.valid) / 3)
    left = args.budget - (clock() - start)
    epochs = max(1, math.floor(left / per_epoch))
    budget = Budget(args.budget)
    fit_start = clock()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, lr, cbs=[budget])
    end = clock()
    wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
    test_dl = learn.dls.test_dl(get_image_files(root / "test"), with_labels=True)
    with learn.no_bar(), learn.no_logging():
        test_accuracy = float(learn.validate(dl=test_dl)[1])
    print(
        json.dumps(
            {
                "side": "fastai",
                "recipe": f"{recipe}; lr_find().valley; fit_one_cycle({epochs}, lr)",
                "lr": lr,
                "planned_epochs": epochs,
                "epochs": len(budget.curve),
                "curve": budget.curve,
                "wall_seconds": round(wall, 2),
                "cpu_seconds": round(cpu, 2),
                "finder_seconds": round(finder_seconds, 2),
                "fit_seconds": round(end - fit_start, 2),
                "test_accuracy": test_accuracy,
                "params": sum(p.numel() for p in learn.model.parameters()),
                "versions": {
                    "torch": torch.__version__,
                    "fastai": __import__("fastai").__version__,
                    "timm": __import__("timm").__version__,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
