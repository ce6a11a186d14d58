"""Text formatting shared by the CLI tables and the generated model cards."""

__all__ = ["human"]


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
