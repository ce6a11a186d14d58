"""Hyperparameter search over layer counts with keras-tuner: `cnnzoo.tune`, `cnnzoo.hypermodel`.

- `api`: `tune` (and `register_best`, from `best`);
- `best`: the winner: its model rebuilt from its checkpoint, `register_best` (its config, beside the search);
- `space`: an entry's `[search]` table as a keras-tuner `HyperModel`;
- `params`: the rules and declarations of one searched value;
- `engine`: cnnzoo's oracles and tuners (defaults first, feasible proposals, run records);
- `records`: trial records, `TuneResult`, the score plot;
- `distributed`: keras-tuner's chief/worker mode with heartbeats.

Importing this package imports neither TensorFlow nor keras-tuner.
"""
