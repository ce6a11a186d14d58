"""Fine-tuning: `cnnzoo.finetune(model_or_name, data)`, staged, resumable, BatchNorm-aware.

- `run`: `finetune` itself;
- `stages`: `Stage`, stages as data, `auto_stages`;
- `schedules`: a stage's learning-rate schedule (cosine, one-cycle) and per-unit rates;
- `lr_finder`: `cnnzoo.find_lr`, the learning-rate sweep (and `learning_rate="auto"`);
- `freezing`: backbone units, `trainable`, the BatchNorm policy, head replacement;
- `batchnorm`: BatchNorm statistics that converge within a stage (precise BN),
  and the warning for a run that ends near chance;
- `features`: the feature cache of frozen stages;
- `checkpoints`: the run directory, its state file and epoch checkpoints;
- `results`: `FinetuneResult`, `StageResult`, `evaluate`;
- `plots`: the learning curve and the confusion matrix.

(The package is not called `finetune`: a submodule import would then replace
the function `cnnzoo.finetune` with the package.) Importing it imports no TensorFlow.
"""
