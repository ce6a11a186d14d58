"""The options of `cnnzoo serve` that decide who may ask and how much: the API key, time-outs, queue bounds.

`guard_options(args)` turns them into `create_app`'s `api_key` and `limits`
(`cnnzoo.deploy.serve_guard.Limits`) and refuses, before any model is loaded,
to open a host other than loopback (`--host 0.0.0.0`) without a key unless
`--insecure` says so: a `ConfigError`, which `cnnzoo` reports with exit status 2.
"""

import dataclasses
import ipaddress
import os
import socket
import sys

from cnnzoo.deploy.serve_guard import Limits
from cnnzoo.errors import ConfigError

__all__ = ["add_guard_arguments", "guard_options", "is_loopback", "API_KEY_ENV"]

API_KEY_ENV = "CNNZOO_API_KEY"


def add_guard_arguments(parser):
    """Adds `--api-key`, `--insecure`, `--body-timeout`, `--max-queue`, `--max-active`, `--client-share`."""
    defaults = {f.name: f.default for f in dataclasses.fields(Limits)}
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"the key every route but the page needs as `Authorization: Bearer KEY` (default: ${API_KEY_ENV}; "
        "the variable keeps it out of the process list); required on a host other than loopback",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="serve a host other than loopback without an API key (anyone who reaches the port can use it)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=defaults["body_timeout_s"],
        help="seconds within which an upload must arrive whole (408 after; default %(default)s)",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=defaults["max_queue"],
        help="uploads waiting for a turn; one more is answered 503 with Retry-After (default %(default)s)",
    )
    parser.add_argument(
        "--max-active",
        type=int,
        default=None,
        help="uploads decoded or in the model at once (default: twice --max-batch, at least 8)",
    )
    parser.add_argument(
        "--client-share",
        type=int,
        default=defaults["client_share"],
        help="most uploads one client address has in the server at once; 429 beyond, 0 turns it off "
        "(default %(default)s)",
    )


def is_loopback(host):
    """Whether `host` (an address or a name) reaches this machine only: 127.0.0.0/8, ::1, `localhost`."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host.lower() == "localhost":
        return True
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found)


def guard_options(args):
    """`{"api_key", "limits"}` for `create_app` from the parsed `cnnzoo serve` arguments.

    Args:
        args: the `argparse.Namespace` of `cnnzoo serve` (`host`, `api_key`,
            `insecure`, `body_timeout`, `max_queue`, `max_active`, `client_share`).

    Returns:
        dict with `api_key` (None or the key, from `--api-key` or `$CNNZOO_API_KEY`) and `limits`.

    Raises:
        ConfigError: a host other than loopback without a key or `--insecure`,
            or an empty key, or a limit out of range.

    Example:

    >>> guard_options(build_parser("serve").parse_args(["serve", "m.keras", "--api-key", "s3cret"]))  # doctest: +SKIP
    {'api_key': 's3cret', 'limits': Limits(...)}
    """
    key = args.api_key if args.api_key is not None else (os.environ.get(API_KEY_ENV) or None)
    if args.api_key is not None and not args.api_key.strip():
        raise ConfigError("`--api-key` must not be empty. Received: --api-key=''. Fix: pass a key, or leave it out.")
    if key is None and not args.insecure and not is_loopback(args.host):
        raise ConfigError(
            f"`--host` {args.host} is not a loopback address, so anyone who reaches the port could use the "
            f"server: it needs an API key. Received: --host={args.host}, no --api-key, no ${API_KEY_ENV}. "
            f"Fix: pass `--api-key KEY` or set `{API_KEY_ENV}` (e.g. "
            "`export CNNZOO_API_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')`), "
            "or `--insecure` to serve without one, or `--host 127.0.0.1`."
        )
    if key is None and args.insecure and not is_loopback(args.host):
        print(
            f"cnnzoo: warning: serving {args.host} without an API key (--insecure): anyone who reaches the "
            "port can use the server",
            file=sys.stderr,
        )
    limits = Limits(
        body_timeout_s=args.body_timeout,
        max_active=args.max_active,
        max_queue=args.max_queue,
        client_share=args.client_share,
    )
    return {"api_key": key, "limits": limits}
