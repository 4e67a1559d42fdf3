"""API keys: shape, randomness and what is stored (pure)."""

from __future__ import annotations

import hashlib

import pytest

from tiktok_service.api import keys


def test_a_new_key_is_well_formed_and_only_its_hash_and_a_short_prefix_are_kept() -> None:
    new = keys.generate()

    assert keys.well_formed(new.secret)
    assert new.digest == hashlib.sha256(new.secret.encode()).digest()
    assert new.secret.startswith(new.shown)
    assert len(new.shown) < 12


def test_two_keys_are_never_the_same() -> None:
    assert len({keys.generate().secret for _ in range(100)}) == 100


@pytest.mark.parametrize(
    "token", ["", "tsk_", "tsk_short", "abc_" + "a" * 43, "tsk_" + "a" * 42 + "!", "tsk_" + "a" * 44]
)
def test_malformed_tokens_are_recognised_without_a_lookup(token: str) -> None:
    assert not keys.well_formed(token)
