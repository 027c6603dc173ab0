"""normalise_email: the one spelling of an email address (contract §4)."""

from __future__ import annotations

import sys

import pytest

from plugins.users import normalise_email
from plugins.users.rules import email_address_problem


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


# What the Unicode review registered beside the start-up admin as accounts that read as it.
@pytest.mark.parametrize("look_alike", [
    "admin\u180b@example.com", "admin\u180f@example.com",  # Mongolian variation selectors
    "admin\ufff9@example.com",  # an interlinear annotation anchor (format)
    "\u0600admin@example.com",  # Arabic number sign (format)
    "admin\ue000@example.com",  # private use
    "admin\u0378@example.com",  # unassigned
    "admin\u0334@example.com",  # a combining overlay on a plain letter
    "admin\u2800@example.com",  # the braille blank: a symbol no one sees
    "=?utf-8?q?admin?=@example.com",  # an encoded word: mail programs decode it as admin@example.com
    "=?UTF-8?B?YWRtaW4=?=@example.com",
    "\u00e9" * 33 + "@example.com",  # 33 characters, 66 octets: over RFC 5321's 64
])
def test_an_address_with_a_character_no_one_sees_is_refused(look_alike: str) -> None:
    assert email_address_problem(normalise_email(look_alike)) is not None


@pytest.mark.parametrize("address", [
    "ann@example.com", "bücher@bücher.de", "josé@example.com", "用户@例子.广告", "x=y?z@example.com",
    "\u00e9" * 32 + "@example.com",  # 64 octets
    "\u0928\u092e\u0938\u094d\u0924\u0947@example.in",  # Devanagari: a virama (Mn) after a letter of its own script
])
def test_real_addresses_are_not(address: str) -> None:
    assert email_address_problem(normalise_email(address)) is None


# Mixed scripts (UTS #39, highly restrictive): one letter of another script inside a part.
@pytest.mark.parametrize("look_alike", [
    "\u0430dmin@example.com",  # a Cyrillic a (U+0430) among Latin letters
    "admin@ex\u0430mple.com",  # in a label of the domain
    "\u0440\u0430\u0443\u0440\u0430l@example.com",  # Cyrillic "payp" + Latin l: reads "paypal"
    "\u03b5\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac\u0430@example.gr",  # Greek with a Cyrillic a
    "admin\u13aa@example.com",  # Cherokee GO, which reads as A
])
def test_an_address_part_mixing_scripts_is_refused(look_alike: str) -> None:
    problem = email_address_problem(normalise_email(look_alike))
    assert problem is not None
    assert "mixes letters of different scripts" in problem


@pytest.mark.parametrize("address", [
    "\u0438\u0432\u0430\u043d@example.com",  # a whole Cyrillic local part: "иван"
    "ivan@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",  # a Cyrillic domain beside a Latin local part
    "tokyo\u6771\u4eac@example.jp",  # Latin with Han
    "\u65e5\u672c\u8a9e\u30c6\u30ad\u30b9\u30c8@example.jp",  # Han with Katakana
    "\u30c6\u30fc\u30d6\u30eb@example.jp",  # Katakana with the prolonged sound mark (Hiragana or Katakana)
    "seoul\uc11c\uc6b8@example.kr",  # Latin with Hangul
    "ann.o-neil_2+tag@example.com",  # digits and punctuation go with any script
])
def test_one_script_or_latin_beside_han_is_not(address: str) -> None:
    assert email_address_problem(normalise_email(address)) is None


@pytest.mark.parametrize(("address", "reason"), [
    ("ann@a\u3002b.com", "ideographic full stop"),  # mail programs send it to ann@a.b.com
    ("ann@a\uff61b.com", "ideographic full stop"),  # the half-width one: NFKC makes it U+3002
    ("ann@" + "\u00e9" * 63 + ".com", "63 octets once encoded"),  # 63 characters, xn--… far past 63
    ("ann@" + ".".join(["\u00e9" * 30] * 8) + ".fr", "253 octets once encoded"),
    # the IDNA form of a Cyrillic look-alike of apple.com, which the script rule reads in letters
    ("x@xn--pple-43d.com", "own letters ('\u0430pple')"),
    ("idn@xn--80adrw.com", "own letters"),  # one mailbox, one spelling: the letters
    ("ann@xn--zz.com", "no valid IDNA label"),
    ("ann@-example.com", "begins or ends with a hyphen"),
    ("ann@example-.com", "begins or ends with a hyphen"),
    ("x@my\u2010site.com", "no valid internationalised label"),  # a Unicode hyphen: reads as my-site.com
    ("x@my\u2212site.com", "no valid internationalised label"),  # a minus sign
])
def test_a_domain_dns_cannot_carry_as_written_is_refused(address: str, reason: str) -> None:
    problem = email_address_problem(normalise_email(address))
    assert problem is not None
    assert reason in problem


def test_a_long_label_that_fits_once_encoded_is_not() -> None:
    label = "\u00e9" * 40
    assert len(f"xn--{label.encode('punycode').decode()}") <= 63
    assert email_address_problem(f"ann@{label}.fr") is None
