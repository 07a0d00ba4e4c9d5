"""The rules one by one, with no I/O."""
from __future__ import annotations

import unicodedata

import pytest

from service.catalog.guides import is_course
from service.people.email import email_shape_problem, matches_nobody, normalize_email, unmatchable_reason


def test_emails_compare_trimmed_case_insensitive_and_nfc():
    decomposed = unicodedata.normalize("NFD", "Åsa.Öberg@Kommun.se")
    assert decomposed != "Åsa.Öberg@Kommun.se"
    assert normalize_email(f"  {decomposed}\t") == normalize_email("åsa.öberg@kommun.se")
    assert normalize_email("ANNA@KOMMUN.SE") == "anna@kommun.se"
    assert normalize_email("anna@kommun.se") != normalize_email("anna2@kommun.se")


KELVIN = "\N{KELVIN SIGN}"

# Rule 2 (docs/rules.md), example by example: (an address, one that must not match it). Each of the
# first is a different address, or one that could pass for another, and matches nobody.
NOT_THE_SAME = [
    ("strasse@kommun.se", "straße@kommun.se"),       # no full case folding: ß is not ss
    ("ſven@kommun.se", "sven@kommun.se"),            # long s: a compatibility form of s
    ("ﬁlip@kommun.se", "filip@kommun.se"),           # the ligature ﬁ is not f + i
    (f"{KELVIN}alle@kommun.se", "kalle@kommun.se"),  # the Kelvin sign becomes K under NFC
    ("ＡＮＮＡ@kommun.se", "anna@kommun.se"),          # fullwidth letters
    ("an\u200bna@kommun.se", "anna@kommun.se"),      # a zero-width space (Cf)
    ("an\u00adna@kommun.se", "anna@kommun.se"),      # a soft hyphen (Cf)
    ("\u0430nna@kommun.se", "anna@kommun.se"),       # Cyrillic а for Latin a
    ("anna@k\u043emmun.se", "anna@kommun.se"),       # Cyrillic о in the domain
    ("\u0130da@kommun.se", "ida@kommun.se"),         # İ becomes ASCII i when lower-cased
]
UNMATCHABLE = ["ſven@kommun.se", "ﬁlip@kommun.se", f"{KELVIN}alle@kommun.se", "ＡＮＮＡ@kommun.se",
               "an\u200bna@kommun.se", "an\u00adna@kommun.se", "\u0430nna@kommun.se",
               "anna@k\u043emmun.se", "\u0130da@kommun.se", "\u0391nna@kommun.se",
               "anna\u0338@kommun.se", "ann\x00a@kommun.se", "ann\ud800a@kommun.se"]


@pytest.mark.parametrize("one, other", NOT_THE_SAME)
def test_addresses_that_only_look_alike_do_not_match(one, other):
    assert normalize_email(one) != normalize_email(other)


@pytest.mark.parametrize("email", UNMATCHABLE)
def test_an_address_that_could_pass_for_another_matches_nobody(email):
    key = normalize_email(email)
    assert matches_nobody(key)
    assert unmatchable_reason(email)
    # the key is storable text (PostgreSQL holds no NUL and no lone surrogate) and the same
    # every time, so redeliveries and the unmatched report see one key
    assert "\x00" not in key
    key.encode("utf-8")  # no lone surrogate
    assert normalize_email(f"  {email} ") == key


def test_a_key_that_matches_nobody_equals_no_matchable_key():
    # A matchable key never holds a space; the marker of the others does.
    assert " " in normalize_email(f"{KELVIN}alle@kommun.se")
    for email in ("kalle@kommun.se", "(matches nobody) kalle@kommun.se", "åsa@kommun.se"):
        key = normalize_email(email)
        assert " " not in key or matches_nobody(key)
    assert matches_nobody(normalize_email("(matches nobody) kalle@kommun.se"))


def test_the_kept_form_of_an_address_that_matches_nobody_names_its_odd_character():
    assert normalize_email(f"{KELVIN}alle@kommun.se").endswith("\\u212aalle@kommun.se")
    assert normalize_email("an\u200bna@kommun.se").endswith("an\\u200bna@kommun.se")
    assert "KELVIN SIGN" in unmatchable_reason(f"{KELVIN}alle@kommun.se")
    assert "CYRILLIC SMALL LETTER A" in unmatchable_reason("\u0430nna@kommun.se")


@pytest.mark.parametrize("one, other", [
    ("Åsa@kommun.se", "åsa@kommun.se"),                                   # simple mapping Å/å
    ("Öberg@kommun.se", "öberg@kommun.se"),                               # Ö/ö
    ("  Anna.Andersson@Kommun.SE\t", "anna.andersson@kommun.se"),        # trimmed, A/a
    (unicodedata.normalize("NFD", "Åsa.Öberg@kommun.se"), "åsa.öberg@kommun.se"),  # NFC
    ("\u212bsa@kommun.se", "åsa@kommun.se"),  # the Ångström sign is Å under NFC (not ASCII)
    ("STRASSE@kommun.se", "strasse@kommun.se"),
    ("STRAßE@kommun.se", "straße@kommun.se"),
    ("Émile.Ünal@kommun.se", "émile.ünal@kommun.se"),
])
def test_the_same_address_in_another_case_or_form_matches(one, other):
    assert normalize_email(one) == normalize_email(other) == other
    assert unmatchable_reason(one) is None


@pytest.mark.parametrize("value, ok", [
    ("anna@kommun.se", True), ("  anna@kommun.se ", True), ("an\u200bna@kommun.se", True),
    ("anna", False), ("@kommun.se", False), ("anna@", False), ("an na@kommun.se", False),
    ("anna@kommun@se", False), ("", False),
])
def test_the_shape_of_an_email_address(value, ok):
    assert (email_shape_problem(value) is None) is ok


def test_every_white_space_character_inside_an_address_is_refused():
    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    assert len(spaces) > 20  # no-break, em and ideographic spaces, line separators, ...
    assert all(email_shape_problem(f"an{c}na@kommun.se") for c in spaces)


@pytest.mark.parametrize("guide_type, expected", [(14, True), (18, True), (1, False), (2, False), (5, False), (0, False)])
def test_only_kurs_and_fysisk_kurs_are_courses(guide_type, expected):
    assert is_course(guide_type) is expected

