"""Mixed-script look-alikes: UTS #39's "highly restrictive" level, for the parts of an address.

"admin@example.com" with its first letter the Cyrillic a (U+0430) reads as the admin's address
and is another account (NFKC keeps the two apart, as it must: they are different letters).
UTS #39 (Unicode security mechanisms, section 5.2) names what browsers use against such domain
names: a string passes when its characters' scripts resolve to one (Common and Inherited
characters count as every script), or when it is Latin with Han and the scripts written beside
Han (Japanese, Chinese with Bopomofo, Korean). A whole word in another script ("иван") passes;
one letter of another script inside a word does not.

Each part is checked alone (the local part and each label of the domain): "иван@example.com" is
an address a Russian user may have. The scripts come from `unicodedataplus` (the standard library
has no Script_Extensions property).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import unicodedataplus

# Common and Inherited characters (digits, punctuation, most combining marks) go with any script.
_ANY: Final = frozenset({"Zyyy", "Zinh"})
# UTS #39 5.1: Han is written with Bopomofo (Hanb), with Hiragana and Katakana (Jpan), with Hangul
# (Kore); each of those scripts stands for the writing systems it belongs to.
_AUGMENTED: Final = {
    "Hani": frozenset({"Hani", "Hanb", "Jpan", "Kore"}),
    "Hira": frozenset({"Hira", "Jpan"}),
    "Kana": frozenset({"Kana", "Jpan"}),
    "Hang": frozenset({"Hang", "Kore"}),
    "Bopo": frozenset({"Bopo", "Hanb"}),
}
_WITH_LATIN: Final = frozenset({"Jpan", "Hanb", "Kore"})


def _scripts(char: str) -> frozenset[str] | None:
    """The scripts `char` may be written in; None for any script."""
    extensions = frozenset(unicodedataplus.script_extensions(char))
    if extensions & _ANY:
        return None
    augmented: set[str] = set(extensions)
    for script in extensions:
        augmented |= _AUGMENTED.get(script, frozenset())
    return frozenset(augmented)


def _resolved(chars: Iterable[str]) -> frozenset[str] | None:
    """The scripts every character of `chars` may be written in (None: any script at all)."""
    resolved: frozenset[str] | None = None
    for char in chars:
        scripts = _scripts(char)
        if scripts is not None:
            resolved = scripts if resolved is None else resolved & scripts
    return resolved


def mixes_scripts(text: str) -> bool:
    """Whether `text` is not "highly restrictive" in UTS #39's sense: neither of one script nor
    Latin beside Han with Japanese, Chinese or Korean."""
    if _resolved(text) != frozenset():
        return False
    without_latin = _resolved(char for char in text if "Latn" not in unicodedataplus.script_extensions(char))
    return without_latin is not None and not (without_latin & _WITH_LATIN)


def mixed_part(email: str) -> str | None:
    """The first part of `email` (its local part or a label of its domain) that mixes scripts."""
    local, _, domain = email.rpartition("@")
    for part in (local, *domain.split(".")):
        if mixes_scripts(part):
            return part
    return None
