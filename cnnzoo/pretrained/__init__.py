"""Weights shipped with cnnzoo, and the scripts that trained them.

- `train_digits`: trains the `digits_cnn` weights on the UCI digits and saves them
  (`python -m cnnzoo.pretrained.train_digits`);
- `digits_cnn_digits.weights.h5` (package data): what it wrote, declared in
  `zoo_configs/digits_cnn.toml` as `[weights.digits]`.
"""
