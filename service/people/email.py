"""How emails are compared (rule 2 of docs/rules.md): the key, and what matches nobody."""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import regex



# docs/rules.md, rule 2. An address's key is: white space trimmed, NFC, then the simple
# lower-case mapping (one code point to one code point). An address that could pass for another
# one matches nobody: its key starts with UNMATCHABLE, which holds a space, a character no
# matchable key holds, so it never equals an employee's key (and employees are refused one).
UNMATCHABLE = "(matches nobody) "
_LATIN = regex.compile(r"\p{Script=Latin}")
_CASED = frozenset({"Ll", "Lu", "Lt"})
_PLAIN_ASCII = re.compile(r"[!-~]+")


def _simple_lower(char: str) -> str | None:
    """Return the simple lower-case mapping of one code point, or None when it is not one."""
    lower = char.lower()
    # str.lower() is the full mapping; it differs from the simple one only where it gives
    # more than one code point (U+0130 İ), whose simple mapping is ASCII "i" anyway.
    return lower if len(lower) == 1 else None


def _nfc_to_ascii(char: str) -> bool:
    """Tell whether NFC turns a non-ASCII character into ASCII (the Kelvin sign into K)."""
    return not char.isascii() and any(c.isascii() for c in unicodedata.normalize("NFC", char))


def _refused(char: str) -> str | None:
    """Say why a character may not be in a matchable key, or None when it may."""
    if char.isascii():
        return None if "!" <= char <= "~" else "is white space or a control character"
    if unicodedata.category(char) not in _CASED:
        return "is not a letter"  # zero-width and other format characters (Cf), symbols, marks
    if unicodedata.normalize("NFKC", char) != char:
        return "is a compatibility form"  # fullwidth letters, ligatures (ﬁ), the long s (ſ)
    if not _LATIN.fullmatch(char):
        return "is a letter of another script than Latin"  # Cyrillic а, Greek ο …
    return None


def unmatchable_reason(email: str) -> str | None:
    """Say why an address matches nobody under rule 2 (docs/rules.md), or None when it can match."""
    trimmed = email.strip()
    for char in trimmed:
        if _nfc_to_ascii(char):
            return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')} becomes ASCII under NFC"
    for char in unicodedata.normalize("NFC", trimmed):
        lower = _simple_lower(char)
        if lower is None or (not char.isascii() and lower.isascii()):
            return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')} becomes ASCII when lower-cased"
        reason = _refused(lower)
        if reason:
            return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')} {reason}"
    return None


def _escape(char: str) -> str:
    """Spell a character out as a Python escape (\\u200b)."""
    return char.encode("unicode_escape").decode("ascii")


def normalize_email(email: str) -> str:
    """Return the key emails are compared by (docs/rules.md, rule 2); see UNMATCHABLE."""
    trimmed = email.strip()
    if _PLAIN_ASCII.fullmatch(trimmed):  # most addresses: NFC changes nothing, lower() is simple
        return trimmed.lower()
    return _unicode_key(trimmed)


@lru_cache(maxsize=65_536)  # a backfill sees the same staff addresses over and over
def _unicode_key(trimmed: str) -> str:
    """Return the key of a trimmed address that is not plain ASCII."""
    if unmatchable_reason(trimmed) is None:
        return "".join(map(_simple_lower, unicodedata.normalize("NFC", trimmed)))
    # The characters at fault spelled out (\u212a, \u200b): ops can see them in the unmatched
    # report, and the key is always storable text.
    shown = unicodedata.normalize("NFC", "".join(_escape(c) if _nfc_to_ascii(c) else c for c in trimmed))
    return UNMATCHABLE + "".join(_escape(c) if _refused(c) else c for c in shown)


def matches_nobody(key: str) -> bool:
    """Tell whether a key made by normalize_email is one that matches nobody."""
    return key.startswith(UNMATCHABLE)


_WHITE_SPACE = re.compile(r"\s")  # the characters str.isspace() takes, all of them


def email_shape_problem(email: str) -> str | None:
    """Say why a value is not an email address (local@domain, no white space), or None."""
    trimmed = email.strip()
    local, at, domain = trimmed.partition("@")
    if not (local and at and domain) or "@" in domain or _WHITE_SPACE.search(trimmed):
        return "not an email address"
    return None
