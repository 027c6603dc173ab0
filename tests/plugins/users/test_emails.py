"""normalise_email: the one spelling of an email address (contract §4)."""

from __future__ import annotations

import sys

import pytest

from plugins.users import normalise_email


@pytest.mark.parametrize(("raw", "normal"), [
    ("ann@example.com", "ann@example.com"),
    ("  Ann@Example.COM\t", "ann@example.com"),
    # full-width letters
    ("\uff41\uff4e\uff4e@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.\uff43\uff4f\uff4d", "ann@example.com"),
    ("\uff21\uff2e\uff2e@example.com", "ann@example.com"),  # full-width capitals: NFKC, then lower
    ("\u3000ann@example.com\u3000", "ann@example.com"),  # ideographic spaces: NFKC, then strip
    ("\u00a0ann@example.com", "ann@example.com"),  # no-break space
    ("\ufb01@example.com", "fi@example.com"),  # the "fi" ligature
    ("\u212bngstr\u00f6m@example.com", "\u00e5ngstr\u00f6m@example.com"),  # Angstrom sign: one a-ring
])
def test_look_alikes_get_one_spelling(raw: str, normal: str) -> None:
    assert normalise_email(raw) == normal


def test_normalising_twice_changes_nothing() -> None:
    # The order NFKC → strip → lower is stable for every character, alone or between others;
    # lower-casing before NFKC is not (e.g. U+00A8 becomes " \u0308", which NFKC leaves alone).
    for code_point in range(sys.maxunicode + 1):
        if 0xD800 <= code_point <= 0xDFFF:
            continue
        for text in (chr(code_point), f"A{chr(code_point)}a"):
            once = normalise_email(text)
            assert normalise_email(once) == once, hex(code_point)
