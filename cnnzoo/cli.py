"""The `cnnzoo` command: thin argument parsing over the library functions.

`cnnzoo list` and `cnnzoo info` never import TensorFlow; the subcommands that
train or predict import it when they run.
"""

import argparse
import json
import sys

from cnnzoo.errors import CnnzooError

__all__ = ["main"]

# Subcommands added by the workflow modules: name -> (module, help). The module
# has `add_arguments(parser)` and `run(args) -> int`; it is imported only to run.
_WORKFLOWS = {
    "demo": ("cnnzoo.commands.demo", "train a zoo CNN on the built-in digits data and print its test accuracy"),
    "finetune": ("cnnzoo.commands.finetune", "fine-tune a zoo model on an image folder (resumable, staged)"),
    "predict": ("cnnzoo.commands.predict", "label image files with a saved model (--json for scripts)"),
    "tune": ("cnnzoo.commands.tune", "search layer counts and widths with keras-tuner (the entry's [search] table)"),
}


def _shape(text):
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",") if p.strip()]
    except ValueError:
        parts = []
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected HxWxC such as 224x224x3, got {text!r}")
    return tuple(parts)


def _human(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _cmd_list(args):
    from cnnzoo import registry

    rows = []
    for name in registry.list_models(args.pattern):
        i = registry.info(name)
        rows.append({"name": name, "kind": i.kind, "input_shape": i.input_shape, "num_classes": i.num_classes,
                     "params": i.params, "flops": i.flops, "description": i.description, "source": i.source})
    if args.json:
        print(json.dumps(rows, indent=2, default=list))
        return 0
    print(f"{'name':<30} {'kind':<8} {'input':<12} {'classes':>7} {'params':>9} {'FLOPs':>9}  description")
    for r in rows:
        shape = "x".join(map(str, r["input_shape"])) if r["input_shape"] else "-"
        params = _human(r["params"]) if r["params"] is not None else "-"
        flops = _human(r["flops"]) if r["flops"] is not None else "-"
        desc = r["description"] if len(r["description"]) <= 60 else r["description"][:57] + "..."
        print(f"{r['name']:<30} {r['kind']:<8} {shape:<12} {r['num_classes'] or '-':>7} {params:>9} {flops:>9}  {desc}")
    return 0


def _cmd_info(args):
    from cnnzoo import registry

    i = registry.info(args.name, input_shape=args.input_shape, num_classes=args.num_classes)
    if args.json:
        print(json.dumps(i.to_dict(), indent=2, default=list))
        return 0
    print(f"{i.name} ({i.kind})\n  {i.description}")
    if i.reference:
        print(f"  reference: {i.reference}")
    print(f"  source: {i.source}")
    if i.params is None:
        print("  built by code: build it with cnnzoo.get() to see its layers")
        return 0
    print(f"  input: {'x'.join(map(str, i.input_shape))}   classes: {i.num_classes}   "
          f"params: {i.params:,}   forward FLOPs/image: {i.flops:,} ({_human(i.flops)})")
    print(f"\n  {'layer':<20} {'kind':<20} {'output':<16} {'params':>12} {'FLOPs':>10}")
    for layer in i.layers:
        shape = "x".join(map(str, layer["output_shape"]))
        print(f"  {layer['name']:<20} {layer['kind']:<20} {shape:<16} {layer['params']:>12,} {_human(layer['flops']):>10}")
    if i.search:
        print("\n  search space ([search] table):")
        for key, value in i.search.items():
            print(f"    {key:<15} {value}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="cnnzoo", description="A Keras 3 zoo of classic CNNs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("list", help="list the zoo (no TensorFlow import)")
    p.add_argument("pattern", nargs="?", default="*", help="shell pattern such as 'vgg*'")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("info", help="describe one model: parameters, FLOPs, layers (no TensorFlow import)")
    p.add_argument("name")
    p.add_argument("--input-shape", type=_shape, default=None, metavar="HxWxC")
    p.add_argument("--num-classes", type=int, default=None, metavar="N")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(func=_cmd_info)
    for name, (module, help_text) in _WORKFLOWS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(workflow=module)
        _workflow_module(module).add_arguments(p)
    return parser


def _workflow_module(module):
    import importlib

    return importlib.import_module(module)


def main(argv=None):
    """Runs the `cnnzoo` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "workflow", None):
            return _workflow_module(args.workflow).run(args)
        return args.func(args)
    except CnnzooError as e:
        print(f"cnnzoo: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `cnnzoo list | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
