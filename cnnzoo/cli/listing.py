"""`cnnzoo list [PATTERN] [--family F] [--pretrained]`: the zoo as a table (or `--json`), no TensorFlow import."""

import json
import sys

from cnnzoo.cli.args import human
from cnnzoo.errors import PluginError
from cnnzoo.zoo import registry

__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("pattern", nargs="?", default="*", help="shell pattern such as 'vgg*'")
    parser.add_argument("--family", default=None, help="only the members of one family, e.g. 'resnet'")
    parser.add_argument("--pretrained", action="store_true", help="only the entries with named weights")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def run(args):
    rows, broken = [], []
    for name in registry.list_models(args.pattern, family=args.family, pretrained=args.pretrained or None):
        try:
            i = registry.info(name)
        except PluginError as e:  # one broken plugin never hides the rest of the zoo
            broken.append(f"{name}: {e}")
            continue
        rows.append(
            {
                "name": name,
                "kind": i.kind,
                "family": registry.entry(name).spec.family if i.kind != "code" else "",
                "input_shape": i.input_shape,
                "num_classes": i.num_classes,
                "params": i.params,
                "flops": i.flops,
                "description": i.description,
                "source": i.source,
            }
        )
    if broken:
        print(
            f"cnnzoo: warning: {len(broken)} model plugin(s) failed to load and are not listed:\n  "
            + "\n  ".join(broken),
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(rows, indent=2, default=list))
        return 0
    print(f"{'name':<30} {'kind':<8} {'input':<12} {'classes':>7} {'params':>9} {'FLOPs':>9}  description")
    for r in rows:
        shape = "x".join(map(str, r["input_shape"])) if r["input_shape"] else "-"
        params = human(r["params"]) if r["params"] is not None else "-"
        flops = human(r["flops"]) if r["flops"] is not None else "-"
        desc = r["description"] if len(r["description"]) <= 60 else r["description"][:57] + "..."
        print(f"{r['name']:<30} {r['kind']:<8} {shape:<12} {r['num_classes'] or '-':>7} {params:>9} {flops:>9}  {desc}")
    return 0
