"""`cnnzoo info NAME`: parameters, FLOPs, layers, receptive fields and search space of one model, without TensorFlow."""

import json

from cnnzoo.cli.args import human, parse_shape
from cnnzoo.zoo import registry

__all__ = ["add_arguments", "run", "field_columns"]


def add_arguments(parser):
    parser.add_argument("name")
    parser.add_argument("--input-shape", type=parse_shape, default=None, metavar="HxWxC")
    parser.add_argument("--num-classes", type=int, default=None, metavar="N")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def run(args):
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
    print(
        f"  input: {'x'.join(map(str, i.input_shape))}   classes: {i.num_classes}   "
        f"params: {i.params:,}   forward FLOPs/image: {i.flops:,} ({human(i.flops)})"
    )
    width = max([20] + [len(layer["name"]) for layer in i.layers])  # residual nets: stage2_block1_shortcut_conv
    print(f"\n  {'layer':<{width}} {'kind':<20} {'output':<16} {'params':>12} {'FLOPs':>10} {'RF px':>6} {'jump':>5}")
    for layer in i.layers:
        shape = "x".join(map(str, layer["output_shape"]))
        size, jump = field_columns(layer["receptive_field"])
        print(
            f"  {layer['name']:<{width}} {layer['kind']:<20} {shape:<16} {layer['params']:>12,} "
            f"{human(layer['flops']):>10} {size:>6} {jump:>5}"
        )
    print(
        "  RF px: receptive field (input pixels one unit sees; 'all': the whole image; '?': unknown); "
        "jump: its stride in input pixels"
    )
    if i.search:
        print("\n  search space ([search] table):")
        for key, value in i.search.items():
            print(f"    {key:<15} {value}")
    return 0


def field_columns(field):
    """(size, jump) strings of a layer row's `receptive_field` dict for the table."""
    if field["size"] is None:
        return "?", "?"
    if field["jump"] is None:
        return "all", "-"
    return str(field["size"]), str(field["jump"])
