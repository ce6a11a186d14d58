"""The model cards in docs/models/ are what `python -m cnnzoo.zoo.cards` generates from the registry."""

import subprocess

from cnnzoo.zoo import cards, config_variants, registry
from conftest import PYTHON, REPO

CARDS = REPO / "docs" / "models"


def test_cards_are_up_to_date():
    want = cards.cards()
    have = {p.name: p.read_text(encoding="utf-8") for p in CARDS.glob("*.md")}
    stale = sorted(n for n in want if have.get(n) != want[n])
    extra = sorted(set(have) - set(want))
    assert not stale and not extra, (
        f"docs/models/ is stale (changed or missing: {stale}; not generated: {extra}). "
        f"Run `python -m cnnzoo.zoo.cards` and commit the result."
    )


def test_every_built_in_entry_has_a_card_with_its_numbers():
    names = cards.entries()
    files = sorted((REPO / "zoo_configs").glob("*.toml"))
    assert set(names) == {s.name for p in files for s in config_variants.load_all(p)}
    index = cards.render_index()
    for name in names:
        assert f"[{name}]({name}.md)" in index
    vgg = cards.render("vgg16")
    assert "| parameters | 138,357,544 |" in vgg
    assert "212 px at `block5_pool` (jump 32 px)" in vgg
    assert "| `block5_conv3` | Conv2D | 14x14x512 | 2,359,808 | 924.84M | 196 | 16 |" in vgg
    assert "`learning_rate` | 1e-05 to 0.01, log sampling" in vgg
    digits = cards.render("digits_cnn")
    assert registry.spec("digits_cnn").weights["digits"].accuracy.startswith("99.44%")
    assert "| `digits` | the whole model |" in digits and "| 99.44% on the 360 held-out images" in digits
    backbone = cards.render("efficientnetb0_classifier")
    assert "unknown for the EfficientNetB0 backbone" in backbone and "not measured by cnnzoo" in backbone
    member = cards.render("convnext_tiny")  # a family member links to its family file
    assert "| parameters | 28,589,128 |" in member and "(`[variants.convnext_tiny]` of family `convnext`)" in member


def test_links_in_the_cards_exist():
    import re

    for path in CARDS.glob("*.md"):
        for link in re.findall(r"\]\(([^)\s#]+)\)", path.read_text(encoding="utf-8")):
            assert (path.parent / link).exists(), f"{path.name} links to a missing {link}"


def test_the_module_writes_the_cards_without_tensorflow(tmp_path):
    (tmp_path / "stale_old_model.md").write_text("old")
    script = (
        "import sys\nfrom cnnzoo.zoo import cards\n"
        f"cards.main(['--out', {str(tmp_path)!r}])\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    proc = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {len(cards.cards())} files" in proc.stdout
    written = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.md")}
    assert written == cards.cards()  # the stale card is gone
