"""Small helpers shared by every part of cnnzoo, each written once.

- `files`: atomic file writes (a crash leaves the old file or the new one, never half of one);
- `plotting`: headless figures with matplotlib's object API (the caller's backend is never switched);
- `checks`: argument checks whose errors name the argument, the rule and what was received;
- `renames`: old keyword names kept working for one release, with a `DeprecationWarning` naming the new one.

Nothing here imports TensorFlow or Keras.
"""
