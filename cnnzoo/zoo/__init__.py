"""The zoo: architectures as data, and the code that builds them.

- `config`: zoo TOML files -> validated, frozen `ModelSpec`s;
- `config_tables`, `config_sections`: the tables of a config (every default lives there and in `config`);
- `config_rules`: the value checks behind every config error;
- `config_writer`: a `ModelSpec` back to TOML;
- `registry`: name -> spec or builder (built-in configs, config paths, `@register`, plugins);
- `stats`: parameters, FLOPs and shapes by arithmetic (what `cnnzoo info` shows);
- `layers`: the serializable `cnnzoo>` Keras layers;
- `builders`: `get`, `build`, the compile recipe;
- `loading`: `load` (a `.keras` file, in safe mode), `as_model`, weights files into a model;
- `weights`: named weights files, fetched, hash-checked and cached.

`config`, `registry` and `stats` never import TensorFlow; importing this package imports none of the others.
"""
