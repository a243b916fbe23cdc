"""The redactor remembers long texts it has cleaned (issue 16: every rehearsed alert records the same few KB of
shell): a remembered result must equal a fresh one, secrets included, and the memory stays bounded."""

from __future__ import annotations

import random

from agent.audit import redact
from agent.audit.redact import REDACTED, redact_text, redact_value

SECRETS = ["password=hunter2hunter2", "Authorization: Bearer abcdefghijklmnop", "token abcdef123456",
           "https://bob:s3cr3tpass@example.org/x", "AKIAABCDEFGHIJKLMNOP", '"api_key": "k-123456789"',
           "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----"]


def _texts(seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["priv nft list ruleset", 'echo "DEADMAN_TOKEN=$t"', "ca_state", "x" * 40, "; ", "\n", "key", "pass"]
    out = []
    for _ in range(60):
        parts = [rng.choice(words) for _ in range(rng.randint(20, 200))]
        if rng.random() < 0.5:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(SECRETS))
        out.append("".join(parts))
    return out


def test_remembered_equals_fresh_for_long_texts_with_and_without_secrets() -> None:
    redact._redact_long.cache_clear()
    for text in _texts(16):
        fresh = redact._redact_uncached(text)
        assert redact_text(text) == fresh  # first call: computed
        assert redact_text(text) == fresh  # second call: remembered
        assert redact_text(str(text.encode().decode())) == fresh  # an equal but distinct string object
    assert redact._redact_long.cache_info().hits > 0


def test_a_remembered_text_with_a_secret_stays_masked() -> None:
    text = "ssh h: run this; " * 20 + "password=hunter2hunter2"
    for _ in range(3):
        assert "hunter2" not in redact_text(text) and REDACTED in redact_text(text)
        assert "hunter2" not in str(redact_value({"preview": [text, text]}))


def test_memo_is_bounded() -> None:
    """Texts above the size limit are never kept; the number kept is capped."""
    redact._redact_long.cache_clear()
    big = "y" * (redact._MEMO_MAX_CHARS + 1) + " password=abcdef12"
    assert "abcdef12" not in redact_text(big)
    assert redact._redact_long.cache_info().currsize == 0
    for i in range(400):
        redact_text(f"{i} " + "z" * 200)
    assert redact._redact_long.cache_info().currsize <= redact._redact_long.cache_info().maxsize == 256
