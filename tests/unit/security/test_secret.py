from __future__ import annotations

import copy
import logging
import pickle
from dataclasses import dataclass

import pytest

from tenant_access.security.secret import MASK, Secret, plain


def test_repr_str_and_format_are_masked() -> None:
    secret = Secret("hunter2")
    assert repr(secret) == "Secret('**********')"
    assert str(secret) == MASK
    assert f"{secret}" == MASK
    assert f"{secret:>12}" == f"{MASK:>12}"
    assert "hunter2" not in "%s %r" % (secret, secret)  # noqa: UP031 - the old style is what loggers use


def test_reveal_and_plain_give_the_value() -> None:
    assert Secret("hunter2").reveal() == "hunter2"
    assert Secret(b"\x00\xff").reveal() == b"\x00\xff"
    assert plain(Secret("a")) == "a"
    assert plain("a") == "a"


def test_a_dataclass_holding_a_secret_prints_masked() -> None:
    @dataclass
    class Holder:
        name: str
        key: Secret[str]

    text = repr(Holder("n", Secret("hunter2")))
    assert "hunter2" not in text
    assert MASK in text


def test_logging_does_not_leak(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("key is %s / %r", Secret("hunter2"), Secret("hunter2"))
    assert "hunter2" not in caplog.text


def test_equality_is_by_value_including_non_ascii() -> None:
    assert Secret("é€") == Secret("é€")
    assert Secret("é€") != Secret("é")
    assert Secret(b"x") == Secret(b"x")
    assert Secret("x") != "x"  # a plain value is not a secret; comparing them is a bug, not a match


def test_not_hashable_not_picklable_and_only_str_or_bytes() -> None:
    with pytest.raises(TypeError):
        hash(Secret("x"))
    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[type-var]


def test_copies_are_the_same_object() -> None:
    secret = Secret("x")
    assert copy.copy(secret) is secret
    assert copy.deepcopy(secret) is secret
