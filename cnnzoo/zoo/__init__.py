"""The zoo: architectures as data, and the code that builds them.

- `config`: zoo TOML files -> validated, frozen `ModelSpec`s;
- `config_tables`: the `[[blocks]]`, `[[stages]]`, `[head]`, `[backbone]` and `[train]` tables (`Block`,
  `ResidualStage`, `Head`, `Backbone`, `Train`) and their parsing;
- `config_sections`: the `[search]` and `[weights]` tables (`SearchParam`, `WeightsSource`) and their parsing;
- `config_rules`: the value checks of config keys (each error names the key, the file, the rule and what was received);
- `config_writer`: a `ModelSpec` back to TOML;
- `registry`: name -> spec or builder (built-in configs, config paths, `@register`, plugins);
- `stats`: parameters, FLOPs, shapes and receptive fields by arithmetic (what `cnnzoo info` shows);
- `cards`: the model cards in `docs/models/`, generated from the registry (`python -m cnnzoo.zoo.cards`);
- `layers`: the serializable `cnnzoo>` Keras layers;
- `builders`: `get`, `build`, the compile recipe;
- `residual`: the residual stages of a config (`[[stages]]`) as a nested `stages` model;
- `loading`: `load` (a `.keras` file, in safe mode), `as_model`, weights files and named weights into a model;
- `precision`: `dtype=` policies set on a model's own layers (`check_dtype`, `dtype_of`, `with_dtype`);
- `weights`: named weights files, fetched, hash-checked and cached.

`config`, `registry` and `stats` never import TensorFlow; importing this package imports none of the others.
"""
