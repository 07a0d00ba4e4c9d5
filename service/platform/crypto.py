"""Secrets kept in the database, encrypted with the keys of ENCRYPTION_KEY (docs/processes.md,
"Settings"): the first key encrypts, every key decrypts, so keys can be rotated."""
from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class NotConfigured(RuntimeError):
    """A setting the operation needs is missing (the message names it)."""


def cipher(keys: tuple[str, ...], what: str) -> MultiFernet:
    """The keys of ENCRYPTION_KEY as one cipher; `what` names the secrets it keeps."""
    if not keys:
        raise NotConfigured(f"ENCRYPTION_KEY is not set: {what} are kept encrypted with it "
                            "(docs/processes.md, \"Settings\")")
    return MultiFernet([Fernet(key) for key in keys])


def decrypt(keys: tuple[str, ...], token: str, what: str) -> str:
    """Decrypt one kept secret (never logged or answered)."""
    try:
        return cipher(keys, what).decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise NotConfigured(f"{what} cannot be decrypted with any key of ENCRYPTION_KEY "
                            "(was a key removed too early?)") from None


def encrypt(keys: tuple[str, ...], text: str, what: str) -> str:
    """Encrypt one secret with the first key."""
    return cipher(keys, what).encrypt(text.encode("utf-8")).decode("ascii")
