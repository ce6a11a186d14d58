"""Where a PyTorch-backend training step goes on a GPU (bench_backends found torch 8.6x JAX's step on an H200).

Times plain Keras `fit` on bird_classifier 224x224, batch 128, mixed_bfloat16, KERAS_BACKEND=torch:
(a) as bench_backends does (NumPy batches), (b) with `torch.backends.cudnn.benchmark = True`,
(c) `train_on_batch` on a batch already on the GPU, and (d) a profile of the top CUDA kernels.
Run: `KERAS_BACKEND=torch python benchmarks/diag_torch_gpu.py` on a machine with a GPU.
"""

import os
import time

os.environ.setdefault("KERAS_BACKEND", "torch")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import cnnzoo  # noqa: E402


def main():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (128 * 8, 224, 224, 3)).astype("float32")
    y = rng.integers(0, 10, len(x))
    model = cnnzoo.get("bird_classifier", num_classes=10, input_shape=(224, 224, 3), compile=False,
                       dtype="mixed_bfloat16")  # fmt: skip
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=128, epochs=1, verbose=0)

    def timed(fn, n):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / n * 1000

    print(f"(a) fit, NumPy batches: {timed(lambda: model.fit(x, y, batch_size=128, epochs=1, verbose=0), 8):.1f} ms")
    xb = torch.as_tensor(x[:128], device="cuda")
    yb = torch.as_tensor(y[:128], device="cuda")
    model.train_on_batch(xb, yb)
    print(
        f"(c) train_on_batch, batch on GPU: {timed(lambda: [model.train_on_batch(xb, yb) for _ in range(8)], 8):.1f} ms"
    )
    torch.backends.cudnn.benchmark = True
    model.train_on_batch(xb, yb)
    model.train_on_batch(xb, yb)
    print(
        f"(b+c) cudnn.benchmark, batch on GPU: {timed(lambda: [model.train_on_batch(xb, yb) for _ in range(8)], 8):.1f} ms"
    )
    print(f"(b) cudnn.benchmark, fit: {timed(lambda: model.fit(x, y, batch_size=128, epochs=1, verbose=0), 8):.1f} ms")
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CUDA, torch.profiler.ProfilerActivity.CPU]
    ) as prof:
        for _ in range(3):
            model.train_on_batch(xb, yb)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=60))


if __name__ == "__main__":
    main()
