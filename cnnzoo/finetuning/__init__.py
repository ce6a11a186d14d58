"""Fine-tuning: `cnnzoo.finetune(model, data)`, staged, resumable, BatchNorm-aware.

- `run`: `finetune` itself: sets a run up from its model, data and `Recipe`;
- `recipe`: `Recipe`, every training option as one frozen, validated object (JSON, fingerprint);
- `training`: `RunContext` and the stages of one run: train, checkpoint, resume, finish;
- `models`: the model a run trains (a zoo name, a `.keras` file or a `keras.Model`) and whether it is pretrained;
- `stages`: `Stage`, stages as data, `auto_stages`;
- `schedules`: a stage's learning-rate schedule (cosine, one-cycle) and per-unit rates;
- `lr_finder`: `cnnzoo.find_lr`, the learning-rate sweep (and `learning_rate="auto"`);
- `regularisation`: `Regularisation`: label smoothing, MixUp/CutMix targets and the loss that takes them, weight EMA;
- `freezing`: backbone units, `trainable`, the BatchNorm policy, head replacement;
- `batchnorm`: BatchNorm statistics that converge within a stage (precise BN),
  and the warning for a run that ends near chance;
- `features`: the feature cache of frozen stages;
- `checkpoints`: the run directory and its epoch checkpoints (kept two deep, SHA-256 sidecars checked before use);
- `run_state`: `RunState`, the run's `state.json` (and `state.previous.json` for a damaged one);
- `results`: `FinetuneResult`, `StageResult`, `evaluate`;
- `plots`: the learning curve and the confusion matrix;
- `explained`: `gradcam.png`, Grad-CAM of a few validation images the model got right and wrong.

(The package is not called `finetune`: a submodule import would then replace
the function `cnnzoo.finetune` with the package.) Importing it imports no TensorFlow.
"""
