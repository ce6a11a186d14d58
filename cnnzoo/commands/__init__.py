"""CLI adapters for the workflow subcommands (`cnnzoo demo`, `finetune`, ...).

Each module here has `add_arguments(parser)` and `run(args) -> int` and imports
TensorFlow only inside `run`, so building the parser stays cheap and
`cnnzoo list` / `cnnzoo info` never load TensorFlow.
"""
