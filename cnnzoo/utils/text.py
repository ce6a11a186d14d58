"""Text formatting shared by the CLI tables, the generated model cards and progress lines."""

__all__ = ["human", "plural"]


def human(n):
    """`1234567` -> `"1.23M"`: counts for tables.

    Example:

    >>> human(138357544)
    '138.36M'
    """
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def plural(n, word):
    """`3, "trial"` -> `"3 trials"`, `1, "epoch"` -> `"1 epoch"`; None stays a `?` count.

    Example:

    >>> plural(1, "epoch")
    '1 epoch'
    """
    if n is None:
        return f"? {word}s"
    return f"{n} {word}{'' if n == 1 else 's'}"
