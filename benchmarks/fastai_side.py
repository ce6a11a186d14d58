"""The fastai half of `bench_fastai.py`: a worker that trains its queue of runs and appends one JSON line each.

Runs in its own venv (`make bench-fastai` creates `.venv-fastai` with torch, fastai and timm), as a
subprocess of `bench_fastai.py`, which writes the data (`<task>.npz`: uint8 images and labels of the
train / valid / test splits) and the job list, and reads the JSON lines this script appends to
`--out`. Per run, what a fastai practitioner does with a network that has no pretrained weights:

    learn = Learner(dls, model, loss_func=..., metrics=accuracy)   # fastai's default Adam, wd 0.01
    learn.fit_one_cycle(n_epochs, lr)                              # lr: lr_find().valley, once per case

The networks (`build`): `bird_cnn` (bird_classifier's layers in torch) and `mnv3_small` (timm's
`mobilenetv3_small_100` features, whose unused `conv_head` is removed, under cnnzoo's head: average
pool, dropout 0.2, one linear layer), each with its Keras twin's input scaling inside. Fairness
rules, the same on the cnnzoo side (bench_fastai.py):

- the images are decoded once, before the clock (a float tensor per split);
- the plan is made once per (task, network, regime) outside any budget: `lr_find()` (its valley)
  and a timed 2-epoch run at that rate give the seconds per epoch and the fixed cost (building,
  the closing save), and the epoch count is the one whose one-cycle ends inside 90% of the budget;
- the clock (process CPU time) runs from before the model is built to after the weights are saved;
  a guard still stops a run whose next epoch would overrun (recorded as `cut`);
- regime `reg`: random shifts up to 10% of each side and zoom 0.9-1.1 with black fill (the layers
  cnnzoo's `augment="auto"` picks below 10,000 images, written as a batch callback) and label
  smoothing 0.1 (`LabelSmoothingCrossEntropyFlat`); regime `plain`: neither (`CrossEntropyLossFlat`).

Usage: python fastai_side.py JOBS.json --out runs.jsonl --threads 1
"""

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

MARGIN = 0.9  # the plan fills this share of the budget: CPU seconds per epoch vary on a shared machine


def bird_cnn(num_classes, size):
    """bird_classifier's layers in torch: rescale to 0-1, 5 x (conv3x3 no bias, BatchNorm, ReLU, max-pool 2),
    flatten, dense 256 + ReLU, dropout 0.5, dense (the zoo config `bird_classifier`)."""
    from torch import nn

    layers, channels = [Scale(1 / 255, 0.0)], 3
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


def mnv3_small(num_classes, size):
    """timm's `mobilenetv3_small_100` body (random weights, its `conv_head` removed) under cnnzoo's head:
    the input scaled to -1..1 as keras.applications' MobileNetV3 does, average pool, dropout 0.2, linear."""
    import timm
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = Scale(1 / 127.5, -1.0)
            self.body = timm.create_model("mobilenetv3_small_100", pretrained=False, num_classes=0, global_pool="")
            self.body.conv_head = nn.Identity()  # not used by forward_features; dropped from the count too
            self.body.act2 = nn.Identity()
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(self.body.num_features, num_classes)
            )

        def forward(self, x):
            return self.head(self.body.forward_features(self.scale(x)))

    return Net()


def Scale(scale, offset):  # noqa: N802 (a layer factory, named as the layer)
    from torch import nn

    class _Scale(nn.Module):
        def forward(self, x):
            return x * scale + offset

    return _Scale()


NETS = {"bird_cnn": bird_cnn, "mnv3_small": mnv3_small}


def shift_zoom_callback(seed):
    """A fastai callback: each training batch shifted up to 10% per side and zoomed 0.9-1.1 (black fill)."""
    import torch
    import torch.nn.functional as F
    from fastai.callback.core import Callback

    class ShiftZoom(Callback):
        def before_batch(self):
            if not self.training:
                return
            x = self.xb[0]
            n = x.shape[0]
            zoom = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.1
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0], theta[:, 1, 1] = zoom, zoom
            theta[:, :, 2] = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.2  # 10% of a side = 0.2 in -1..1
            grid = F.affine_grid(theta, x.shape, align_corners=False)
            self.learn.xb = (F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False),)

    gen = torch.Generator().manual_seed(seed)
    return ShiftZoom()


def load(npz):
    """`{split: (float NCHW 0-255 tensor, int64 labels)}` from the task's npz: decoded once, before any clock."""
    import numpy as np
    import torch

    data = np.load(npz)
    return {
        s: (torch.from_numpy(data[f"x_{s}"]).permute(0, 3, 1, 2).float().contiguous(), torch.from_numpy(data[f"y_{s}"]))
        for s in ("train", "valid", "test")
    }


def learner(arrays, arch, regime, seed, bs=32):
    import fastai.callback.all  # noqa: F401 (patches Learner: fit_one_cycle, lr_find, no_bar)
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed
    from torch.utils.data import TensorDataset

    set_seed(seed, reproducible=True)
    train, valid = TensorDataset(*arrays["train"]), TensorDataset(*arrays["valid"])
    dls = DataLoaders(
        DataLoader(train, bs=bs, shuffle=True, drop_last=True, num_workers=0),
        DataLoader(valid, bs=2 * bs, num_workers=0),
        device="cpu",
    )
    classes = int(arrays["train"][1].max()) + 1
    model = NETS[arch](classes, arrays["train"][0].shape[-1])
    loss = LabelSmoothingCrossEntropyFlat(eps=0.1) if regime == "reg" else CrossEntropyLossFlat()
    cbs = [shift_zoom_callback(seed)] if regime == "reg" else []
    return Learner(dls, model, loss_func=loss, metrics=accuracy, cbs=cbs)


def train(arrays, arch, regime, seed, epochs, lr, budget):
    """One run on the clock: `(learn, record)`; the record has the curve and the seconds."""
    from fastai.callback.core import Callback, CancelFitException
    from fastai.learner import Recorder

    class Guard(Callback):
        """Records each epoch; stops when another epoch would overrun the budget."""

        order = Recorder.order + 1

        def after_epoch(self):
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            train_loss, val_loss, acc = (float(v) for v in self.recorder.values[-1])
            curve.append({"epoch": len(curve) + 1, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                          "train_loss": train_loss, "val_loss": val_loss, "val_acc": acc})  # fmt: skip
            last = curve[-2]["cpu_s"] if len(curve) > 1 else fit0
            if len(curve) < epochs and cpu + (cpu - last) > budget:
                record["cut"] = True
                raise CancelFitException()

    import torch

    curve, record = [], {"cut": False}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    learn = learner(arrays, arch, regime, seed)
    learn.recorder.silent = True
    fit0 = time.process_time() - cpu0
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, lr, cbs=[Guard()])
    with tempfile.TemporaryDirectory() as tmp:  # the closing save, as cnnzoo's run saves its model
        torch.save(learn.model.state_dict(), Path(tmp) / "model.pth")
    record.update(cpu_s=round(time.process_time() - cpu0, 2), wall_s=round(time.perf_counter() - wall0, 2))
    record["curve"] = curve
    return learn, record


def accuracy_on(learn, x, y):
    import torch

    learn.model.eval()
    with torch.no_grad():
        pred = torch.cat([learn.model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return float((pred == y).float().mean())


def plan(arrays, arch, regime, budget):
    """Outside any budget: the LR finder's valley, then a timed 2-epoch run at it; `(epochs, lr, facts)`."""
    learn = learner(arrays, arch, regime, seed=0)
    learn.recorder.silent = True
    with learn.no_bar(), learn.no_logging():
        lr = float(learn.lr_find(show_plot=False).valley)
    _, probe = train(arrays, arch, regime, 0, 2, lr, float("inf"))
    per_epoch = probe["curve"][1]["cpu_s"] - probe["curve"][0]["cpu_s"]
    fixed = max(0.0, probe["cpu_s"] - 2 * per_epoch)
    epochs = max(1, math.floor((MARGIN * budget - fixed) / per_epoch))
    return epochs, lr, {"per_epoch_s": round(per_epoch, 2), "fixed_s": round(fixed, 2), "lr": lr}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", help="JSON list of {task, npz, arch, regime, seed, budget}")
    parser.add_argument("--out", required=True, help="JSON lines file to append each run's record to")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    import fastai
    import timm

    versions = {"torch": torch.__version__, "fastai": fastai.__version__, "timm": timm.__version__}
    data, plans = {}, {}
    for job in json.loads(Path(args.jobs).read_text()):
        if job["npz"] not in data:
            data[job["npz"]] = load(job["npz"])
        arrays = data[job["npz"]]
        key = (job["task"], job["arch"], job["regime"])
        if key not in plans:
            plans[key] = plan(arrays, job["arch"], job["regime"], job["budget"])
        epochs, lr, facts = plans[key]
        learn, record = train(arrays, job["arch"], job["regime"], job["seed"], epochs, lr, job["budget"])
        record.update(
            {k: job[k] for k in ("task", "pair", "arch", "regime", "seed", "budget") if k in job},
            side="fastai",
            planned_epochs=epochs,
            plan=facts,
            recipe=f"Learner(dls, {job['arch']}); lr_find().valley (planned, unbilled); fit_one_cycle({epochs}, {lr:.2g})",
            val_acc=accuracy_on(learn, *arrays["valid"]),
            test_acc=accuracy_on(learn, *arrays["test"]),
            params=sum(p.numel() for p in learn.model.parameters()),
            versions=versions,
        )
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
