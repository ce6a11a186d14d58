"""Small helpers shared by every part of cnnzoo, each written once.

- `files`: atomic file writes (a crash leaves the old file or the new one, never half of one);
- `integrity`: SHA-256 sidecars (`<file>.sha256`) written beside files cnnzoo trusts later, checked before use;
- `plotting`: headless figures with matplotlib's object API (the caller's backend is never switched);
- `checks`: argument checks whose errors name the argument, the rule and what was received;
- `extras`: `require`, an optional dependency imported, or an error naming the extra that installs it;
- `locks`: `RunLock`, one process at a time in a run or search directory (an OS file lock);
- `devices`: `bf16_units`, whether the machine computes bfloat16 (CPU flags, GPU compute capability);
- `seeding`: `seeded`, a seeded block that restores the caller's Python, NumPy, TensorFlow and Keras random state;
- `text`: `human`, counts formatted for the CLI tables and the model cards;
- `renames`: old keyword names kept working for one release, with a `DeprecationWarning` naming the new one;
- `console`: TensorFlow's start-up lines kept off stderr (installed by `import cnnzoo`), and `keras_verbose`,
  progress bars on a terminal and one line per epoch in a file.

Nothing here imports TensorFlow or Keras on import (`seeding` imports them when given a seed).
"""
