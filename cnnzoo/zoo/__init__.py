"""The zoo: architectures as data, and the code that builds them.

- `config`: zoo TOML files -> validated, frozen `ModelSpec`s;
- `config_tables`: the `[[blocks]]`, `[[stages]]`, `[head]`, `[backbone]` and `[train]` tables (`Block`,
  `ResidualStage`, `Head`, `Backbone`, `Train`) and their parsing;
- `config_sections`: the `[search]` and `[weights]` tables (`SearchParam`, `WeightsSource`) and their parsing;
- `config_rules`: the value checks of config keys (each error names the key, the file, the rule and what was received);
- `config_writer`: a `ModelSpec` back to TOML;
- `config_variants`: family files (`zoo_configs/resnet.toml`), one spec per `[variants.NAME]` table;
- `families`: which entries belong together (`list_models(family=..., pretrained=...)`) and the test tiers;
- `registry`: name -> spec or builder (built-in configs, config paths, `@register`, plugins);
- `stats`: parameters, FLOPs, shapes and receptive fields by arithmetic (what `cnnzoo info` shows);
- `cards`: the model cards in `docs/models/`, generated from the registry (`python -m cnnzoo.zoo.cards`);
- `layers`: the serializable `cnnzoo>` Keras layers;
- `builders`: `get`, `build`, the compile recipe;
- `features`: multi-scale feature maps (`features_model`, `feature_info`: `get(name, features_only=True)`);
- `heads`: pooled embeddings (`num_classes=0`) and `reset_classifier` (a new head on the same layers);
- `residual`: the residual stages of a config (`[[stages]]`) as a nested `stages` model;
- `loading`: `load` (a `.keras` file, in safe mode), `as_model`, weights files and named weights into a model;
- `precision`: `dtype=` policies set on a model's own layers (`check_dtype`, `dtype_of`, `with_dtype`);
- `weights`: named weights files, fetched, hash-checked and cached;
- `presets`: `save_preset` and `load_preset`, models as directories in keras-hub's preset layout;
- `kerashub`: keras-hub image classifier and backbone presets as zoo models (the `keras_hub` extra);
- `hub`: `hf://owner/repo[@revision]` handles, fetched with huggingface_hub into its cache (the `hub` extra).

`config`, `registry` and `stats` never import TensorFlow; importing this package imports none of the others.
"""
