"""`hf://owner/repo[@revision]` handles: Hugging Face Hub repositories fetched with `huggingface_hub`.

`fetch` downloads a repository's preset files (`*.json`, `*.weights.h5`, `assets/`) with
`huggingface_hub.snapshot_download` into the Hugging Face cache and returns the snapshot
directory, which `cnnzoo.zoo.presets` reads as any preset directory. Its cache, revisions and
offline mode are huggingface_hub's own: a revision is a branch, a tag or a commit; a second load
of the same revision is served from the cache; with `HF_HUB_OFFLINE=1` (or `CNNZOO_OFFLINE=1`)
nothing touches the network and only cached snapshots load. `HF_ENDPOINT`, `HF_HUB_CACHE`,
`HF_HOME` and `HF_HUB_OFFLINE` are read when a handle is fetched, so setting them after
`import huggingface_hub` counts too. Before downloading, the repository's file list is checked:
a repository that holds no preset is refused with nothing downloaded.

`huggingface_hub` is the `hub` extra (`pip install 'cnnzoo[hub]'`); importing cnnzoo never imports it.
"""

import importlib
import logging
import os
import re
from pathlib import Path

from cnnzoo.errors import ConfigError, WeightsDownloadError, WeightsNotFoundError
from cnnzoo.utils.extras import require
from cnnzoo.zoo import weights as weights_lib

__all__ = ["PREFIX", "PATTERNS", "parse", "fetch", "is_offline"]

log = logging.getLogger("cnnzoo")

PREFIX = "hf://"
PATTERNS = ["*.json", "*.weights.h5", "assets/*"]  # what a preset holds: the rest of a repository stays remote
_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?$")  # the Hub's owner and repository names
_FALSE = ("", "0", "false", "no", "off")


def parse(handle, argument="name"):
    """Splits an `hf://owner/repo[@revision]` handle into `(repo_id, revision)`.

    Args:
        handle: str, e.g. `"hf://someone/birds"` or `"hf://someone/birds@v1"`.
        argument: the caller's argument name, for messages.

    Returns:
        `(repo_id, revision)`; the revision is None (the default branch) when the handle has none.

    Example:

    >>> parse("hf://someone/birds@v1")
    ('someone/birds', 'v1')
    """
    text = str(handle)
    scheme = text.split("://", 1)[0].lower() + "://" if "://" in text else ""
    if scheme != PREFIX:
        raise ConfigError(
            f"`{argument}` must be a zoo name, a preset directory or an {PREFIX}owner/repo[@revision] handle "
            f"(cnnzoo reads the Hugging Face Hub, not {scheme or 'that'}). Received: {argument}={text!r}."
        )
    repo_id, at, revision = text[len(PREFIX) :].partition("@")
    parts = repo_id.split("/")
    bad = len(parts) != 2 or not all(_PART.match(p) and ".." not in p and "--" not in p for p in parts)
    if bad or (at and not revision.strip()):
        raise ConfigError(
            f"`{argument}` must be an {PREFIX}owner/repo handle, optionally with @revision (a branch, tag or "
            f"commit), where owner and repo are Hub names (letters, digits, '-', '_', '.'). Received: "
            f"{argument}={text!r}. For example: {PREFIX}someone/birds or {PREFIX}someone/birds@v1."
        )
    return repo_id, (revision or None)


def is_offline(hub=None):
    """True when `HF_HUB_OFFLINE` (read now, or when huggingface_hub was imported) or `CNNZOO_OFFLINE` is set.

    Example:

    >>> is_offline()  # doctest: +SKIP
    False
    """
    constants = importlib.import_module("huggingface_hub.constants") if hub is not None else None
    imported = bool(getattr(constants, "HF_HUB_OFFLINE", False))
    now = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in _FALSE
    return imported or now or weights_lib.is_offline()


def fetch(source, check=None):
    """Downloads (or finds in the cache) the preset files of an `hf://` handle; returns the snapshot directory.

    Args:
        source: the handle, or an object with `reference` (the handle) and `argument`
            (the caller's argument name, for messages).
        check: optional `check(file_names, source)` run on the repository's file list
            before anything is downloaded; it raises to refuse the repository.

    Returns:
        The `Path` of the snapshot directory in the Hugging Face cache.

    Example:

    >>> fetch("hf://someone/birds@v1")  # doctest: +SKIP
    PosixPath('.../hub/models--someone--birds/snapshots/0123...')
    """
    handle, argument = getattr(source, "reference", source), getattr(source, "argument", "name")
    repo_id, revision = parse(handle, argument)
    hf = require("huggingface_hub", "hub", f"Loading {handle!r} from the Hugging Face Hub")
    errors = importlib.import_module("huggingface_hub.errors")
    offline = is_offline(hf)
    options = {"endpoint": os.environ.get("HF_ENDPOINT") or None, "cache_dir": _cache_dir(), "revision": revision}
    where = f"{repo_id!r} on {options['endpoint'] or importlib.import_module('huggingface_hub.constants').ENDPOINT}"
    try:
        if not offline and check is not None:
            files = _listing(hf, repo_id, options)
            if files is not None:
                check(files, source)
        path = hf.snapshot_download(
            repo_id, local_files_only=offline, allow_patterns=PATTERNS, library_name="cnnzoo", **options
        )
    except errors.RevisionNotFoundError as e:
        raise WeightsNotFoundError(
            f"`{argument}` names revision {revision!r} of {where}, which has no such branch, tag or commit. "
            f"Received: {argument}={handle!r}."
        ) from e
    except errors.RepositoryNotFoundError as e:
        raise WeightsNotFoundError(
            f"`{argument}` names the repository {where}, which does not exist or needs a token (private or "
            f"gated: log in with `hf auth login` or set HF_TOKEN). Received: {argument}={handle!r}."
        ) from e
    except (
        errors.LocalEntryNotFoundError,
        getattr(errors, "IncompleteSnapshotError", errors.LocalEntryNotFoundError),
    ) as e:
        raise _not_cached(argument, handle, where, offline, e) from e
    except errors.HfHubHTTPError as e:
        raise WeightsDownloadError(
            f"`{argument}` could not be fetched from {where}: {str(e).splitlines()[0]}. Try again later, or load a "
            f"cached copy with HF_HUB_OFFLINE=1. Received: {argument}={handle!r}."
        ) from e
    log.info("%s is %s", handle, path)
    return Path(path)


def _listing(hf, repo_id, options):
    """The repository's file names at the revision, or None when the Hub cannot be asked (the cache decides)."""
    errors = importlib.import_module("huggingface_hub.errors")
    api = hf.HfApi(endpoint=options["endpoint"], library_name="cnnzoo")
    try:
        info = api.model_info(repo_id, revision=options["revision"])
    except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError):
        raise
    except Exception as e:  # connection errors differ by huggingface_hub version (requests, httpx, httpx2)
        log.info("could not list %s (%s); looking in the Hugging Face cache", repo_id, e)
        return None
    return None if info.siblings is None else [s.rfilename for s in info.siblings]


def _cache_dir():
    """`HF_HUB_CACHE`, else `HF_HOME/hub`, as huggingface_hub reads them, but now; None: huggingface_hub's."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def _not_cached(argument, handle, where, offline, error):
    if offline:
        return WeightsNotFoundError(
            f"`{argument}` names {where}, which is not (completely) in the Hugging Face cache, and offline mode is "
            f"on (HF_HUB_OFFLINE or CNNZOO_OFFLINE): load it once online, or unset offline mode. "
            f"Received: {argument}={handle!r}."
        )
    return WeightsDownloadError(
        f"`{argument}` could not be fetched from {where}, and it is not in the Hugging Face cache: "
        f"{str(error).splitlines()[0]} Check the connection (and HF_ENDPOINT). Received: {argument}={handle!r}."
    )
