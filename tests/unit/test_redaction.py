"""hostbatch.logs.redact: registered secrets are masked; short ones only as whole words."""

from __future__ import annotations

import secrets

from hostbatch.logs import MASK, redact
from hostbatch.models import Secret


def test_a_long_secret_is_masked_wherever_it_occurs() -> None:
    value = f"pw{secrets.token_hex(8)}"
    Secret(value)
    assert redact(f"x={value}, inside{value}word") == f"x={MASK}, inside{MASK}word"


def test_a_short_secret_is_masked_as_a_word_and_leaves_other_words_alone() -> None:
    short = "q" + secrets.token_hex(2)  # 5 characters: under the whole-word threshold
    Secret(short)
    text = f"most recent call; token {short}, then ({short}) and pre{short}fix"
    assert redact(text) == f"most recent call; token {MASK}, then ({MASK}) and pre{short}fix"


def test_password_pairs_are_masked_without_a_registered_secret() -> None:
    assert redact("password=hunter2 passphrase: abc") == f"password={MASK} passphrase: {MASK}"
