"""Weight sources: the named weights of zoo entries, fetched, hash-checked and cached.

An entry declares named weights in its TOML as `[weights.NAME]` (see
`cnnzoo.zoo.config_sections.WeightsSource`): a `file` shipped inside cnnzoo, or a `url`
with its `sha256` (or the `md5` upstream publishes). This module only finds,
fetches and verifies the file; `cnnzoo.get(name, weights=NAME)` (the builders)
loads it into the model.

Downloads go to `$CNNZOO_HOME/weights` (default `~/.cnnzoo/weights`): the bytes
stream into a temporary file in that directory, the length and hash are
checked, and only then is the file renamed into place, so the cache never
holds a partial or unverified file. A cached file is verified again before
each use. With `CNNZOO_OFFLINE=1` nothing touches the network and a missing
file is reported with the exact path to put it at.
"""

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

from cnnzoo.errors import UnknownWeightsError, WeightsDownloadError, WeightsError, WeightsNotFoundError, closest
from cnnzoo.utils.files import atomic_save
from cnnzoo.zoo import registry

__all__ = ["named_source", "resolve", "download", "cache_dir", "cache_path", "file_hash", "is_offline", "names"]

logger = logging.getLogger("cnnzoo")
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the cnnzoo package: shipped files are relative to it
_CHUNK = 1 << 20


def cache_dir():
    """The weights cache: `$CNNZOO_HOME/weights` (default `~/.cnnzoo/weights`)."""
    return registry.home() / "weights"


def is_offline():
    """True when `CNNZOO_OFFLINE` is set to anything but empty, 0, false, no or off."""
    return os.environ.get("CNNZOO_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off")


def names(spec):
    """The weights names a `ModelSpec` declares, sorted.

    Example:

    >>> cnnzoo.zoo.weights.names(cnnzoo.spec("digits_cnn"))
    ['digits']
    """
    return sorted(spec.weights)


def file_hash(path, algorithm="sha256"):
    """Hex digest of a file, read in 1 MiB chunks.

    Args:
        path: str or `Path`.
        algorithm: `"sha256"` or `"md5"` (any `hashlib` name).

    Returns:
        The lowercase hex digest.

    Example:

    >>> cnnzoo.zoo.weights.file_hash("model.weights.h5")  # doctest: +SKIP
    '3f2a...'
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path(source):
    """Where a `WeightsSource` lives in the cache: its `file` name, else the URL's file name."""
    name = Path(source.file).name if source.file else Path(urllib.parse.urlparse(source.url).path).name
    return cache_dir() / name


def _expected(sha256, md5):
    if sha256:
        return "sha256", sha256
    if md5:
        return "md5", md5
    return None, None


def _hash_problem(path, sha256="", md5=""):
    algorithm, want = _expected(sha256, md5)
    if algorithm is None:
        return None
    got = file_hash(path, algorithm)
    return None if got == want else f"its {algorithm} is {got}, expected {want}"


def _label(source, model_name):
    return f"`weights={source.name!r}`" + (f" of `{model_name}`" if model_name else "")


def resolve(source, model_name=""):
    """Returns the local, verified file of a named weights source.

    Order: the file shipped inside cnnzoo (`file`), else the cache
    (`cache_path(source)`), else a download of `url` into the cache (unless
    `CNNZOO_OFFLINE` is set). A cached file that fails its hash is downloaded
    again (with a warning), or reported when offline.

    Args:
        source: a `cnnzoo.zoo.config_sections.WeightsSource`.
        model_name: str, the entry's name, for messages.

    Returns:
        A `Path`.

    Example:

    >>> cnnzoo.zoo.weights.resolve(cnnzoo.spec("digits_cnn").weights["digits"])  # doctest: +SKIP
    PosixPath('.../cnnzoo/pretrained/digits_cnn_digits.weights.h5')
    """
    label = _label(source, model_name)
    if source.file:
        packaged = _PACKAGE_DIR / source.file
        if packaged.is_file():
            problem = _hash_problem(packaged, source.sha256, source.md5)
            if problem:
                raise WeightsError(
                    f"{label} uses the file {str(packaged)!r} shipped with cnnzoo, and {problem}: "
                    f"the installation is damaged. Reinstall cnnzoo (pip install --force-reinstall "
                    f"cnnzoo). Received: weights={source.name!r}."
                )
            return packaged
    target = cache_path(source)
    if target.is_file():
        problem = _hash_problem(target, source.sha256, source.md5)
        if problem is None:
            return target
        if not source.url or is_offline():
            why = "CNNZOO_OFFLINE is set" if source.url else "the entry declares no url to fetch it from"
            raise WeightsError(
                f"{label}: the cached file {str(target)!r} is damaged ({problem}) and {why}. Delete "
                f"it and put a good copy there{' (from ' + source.url + ')' if source.url else ''}. "
                f"Received: weights={source.name!r}."
            )
        warnings.warn(
            f"The cached weights {str(target)!r} are damaged ({problem}); downloading them again from {source.url}.",
            stacklevel=3,
        )
        target.unlink()
    if not source.url:
        about = f" {source.description}" if source.description else ""
        raise WeightsNotFoundError(
            f"{label} needs the file {target.name!r}, which is not in the cache.{about} "
            f"Put the file at {str(target)!r} (the cache is $CNNZOO_HOME/weights). "
            f"Received: weights={source.name!r}."
        )
    return download(source.url, target, sha256=source.sha256, md5=source.md5, what=label)


def download(url, path, sha256="", md5="", timeout=60, what=""):
    """Downloads `url` to `path` atomically, checking its length and hash.

    The bytes go to a temporary file next to `path`; only a complete file
    whose hash matches is renamed to `path`. On any failure nothing is left
    behind and the error names the URL, the file and the fix.

    Args:
        url: str, http(s) URL.
        path: str or `Path` of the final file (its directory is created).
        sha256: expected lowercase hex sha256 (preferred), or
        md5: expected md5, for upstream files that only publish md5.
        timeout: float, seconds without data before giving up.
        what: str, what the file is for (used in messages).

    Returns:
        `path` as a `Path`.

    Example:

    >>> download("https://example.org/w.weights.h5", "w.weights.h5", sha256="...")  # doctest: +SKIP
    """
    path = Path(path)
    algorithm, want = _expected(sha256, md5)
    label = what or f"The weights file {path.name!r}"
    fix = f"download {url} yourself and put it at {str(path)!r}"
    if algorithm is None:
        raise WeightsError(
            f"`sha256` (or `md5`) is required: downloads are always hash-checked. "
            f"Received: url={url!r}, sha256={sha256!r}, md5={md5!r}."
        )
    if is_offline():
        raise WeightsNotFoundError(
            f"{label} needs {str(path)!r}, which is missing, and CNNZOO_OFFLINE is set so "
            f"nothing is downloaded. On a machine with internet access, {fix} "
            f"({algorithm} {want}); or unset CNNZOO_OFFLINE. Received: url={url!r}."
        )
    received = 0

    def fetch(tmp):
        nonlocal received
        digest = hashlib.new(algorithm)
        expected = None
        with open(tmp, "wb") as out:
            logger.info("Downloading %s to %s", url, path)
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    expected = int(length) if length and length.isdigit() else None
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
            except urllib.error.HTTPError as e:
                raise WeightsDownloadError(
                    f"{label}: the server answered HTTP {e.code} ({e.reason}) for {url}. "
                    f"Check the url in the entry's config, try again later, or {fix}."
                ) from e
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                reason = getattr(e, "reason", None) or e
                raise WeightsDownloadError(
                    f"{label}: could not download {url}: {reason}. Check the network "
                    f"connection and try again, or {fix}."
                ) from e
        if expected is not None and received != expected:
            raise WeightsDownloadError(
                f"{label}: the transfer of {url} ended after {received:,} of {expected:,} "
                f"bytes (connection closed early). Nothing was saved; try again, or {fix}."
            )
        got = digest.hexdigest()
        if got != want:
            raise WeightsError(
                f"{label}: the file downloaded from {url} ({received:,} bytes) has {algorithm} "
                f"{got}, expected {want}. It was deleted. The download was corrupted or the file "
                f"changed upstream: try again, and if it persists fix the hash in the config or "
                f"{fix} after checking it."
            )

    atomic_save(path, fetch)  # the cache never holds a partial or unverified file
    return path


def named_source(spec, name):
    """The `WeightsSource` an entry declares under `name`; `UnknownWeightsError` names the ones it has.

    Example:

    >>> cnnzoo.zoo.weights.named_source(cnnzoo.spec("digits_cnn"), "digits").target
    'model'
    """
    source = spec.weights.get(name)
    if source is None:
        known = ", ".join(f"`{n}`" for n in names(spec)) or "none"
        raise UnknownWeightsError(
            f"`weights` must be None, a .weights.h5/.keras file, or a weights name that `{spec.name}` declares "
            f"(its names: {known}).{closest(name, names(spec))} Received: weights={name!r}."
        )
    return source
