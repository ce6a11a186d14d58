"""Weights shipped with cnnzoo, and the scripts that trained them.

`digits_cnn_digits.weights.h5` comes from `python -m cnnzoo.pretrained.train_digits`
and is declared in `zoo_configs/digits_cnn.toml` as `[weights.digits]`.
"""
