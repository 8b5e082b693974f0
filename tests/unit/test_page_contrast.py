"""WCAG AA contrast (4.5:1 for body text) of the text on every heat colour and highlight, read
from the stylesheet the pages serve."""

from __future__ import annotations

import re

import pytest

from api.pages.heatmap import HEAT_LEVELS
from api.pages.templating import STATIC_DIR

CSS = (STATIC_DIR / "style.css").read_text()
AA = 4.5


def relative_luminance(hex_colour: str) -> float:
    """WCAG 2.x relative luminance of '#rrggbb' or '#rgb'."""
    if len(hex_colour) == 4:
        hex_colour = "#" + "".join(c * 2 for c in hex_colour[1:])
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def variables() -> dict[str, str]:
    root = re.search(r":root\s*\{([^}]*)\}", CSS).group(1)
    return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6}|#[0-9a-fA-F]{3})\b", root))


def rule(selector: str) -> dict[str, str]:
    """The declarations of the first rule whose selector list is exactly `selector`."""
    m = re.search(r"(?:^|\n)" + re.escape(selector) + r"\s*\{([^}]*)\}", CSS)
    assert m, f"no rule {selector!r} in style.css"
    decls = dict(re.findall(r"([\w-]+)\s*:\s*([^;]+);", m.group(1)))
    names = variables()
    return {k: names.get(v.strip()[6:-1], v.strip()) if v.strip().startswith("var(") else v.strip()
            for k, v in decls.items()}  # fmt: skip


def test_contrast_formula_matches_wcag_reference_values():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


@pytest.mark.parametrize("level", range(HEAT_LEVELS))
def test_token_text_on_every_heat_colour_meets_aa(level):
    decl = rule(f".tok.h{level}")
    text = decl.get("color", variables()["fg"])
    assert contrast(text, decl["background"]) >= AA, (level, text, decl["background"])


@pytest.mark.parametrize(
    "selector", ["mark.wrong", "mark.fix", ".badge.ok", ".badge.bad", ".badge.generic"]
)
def test_highlights_meet_aa(selector):
    decl = rule(selector)
    assert contrast(decl["color"], decl["background"]) >= AA, selector


def test_muted_text_meets_aa_on_cards_and_the_page():
    names = variables()
    assert contrast(names["muted"], names["card"]) >= AA
    assert contrast(names["muted"], names["bg"]) >= AA
