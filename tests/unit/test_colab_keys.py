"""The key from Colab's secrets (``google.colab.userdata``), tried last and only in Colab.

Colab cannot be reached from here, so a stand-in ``google.colab.userdata`` is put in
``sys.modules``. It behaves like Colab's own module: ``get(name)`` returns the secret
or raises ``SecretNotFoundError`` / ``NotebookAccessError`` (the class names are what
the lookup goes by, as Colab's real classes are not importable outside Colab).
"""

from __future__ import annotations

import logging
import sys
import types

import pytest

from soniox_widget import SonioxRecorder
from soniox_widget.auth import APIKey, colab_api_key, find_api_key, require_api_key
from soniox_widget.backend import LOCAL_LABEL, choose_backend
from soniox_widget.errors import MissingAPIKeyError

SECRET = "sk-colab-secret-0123456789abcdef"


class SecretNotFoundError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"Secret {key} does not exist.")


class NotebookAccessError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(f"Notebook does not have access to secret {key}")


class TimeoutException(Exception):
    pass


class StandInUserdata(types.ModuleType):
    """Colab's ``userdata`` module: ``get`` answers from ``secrets`` or raises ``failure``."""

    SecretNotFoundError = SecretNotFoundError
    NotebookAccessError = NotebookAccessError
    TimeoutException = TimeoutException

    def __init__(self) -> None:
        super().__init__("google.colab.userdata")
        self.secrets: dict[str, str] = {}
        self.failure: Exception | None = None
        self.asked: list[str] = []

    def get(self, key: str) -> str:
        self.asked.append(key)
        if self.failure is not None:
            raise self.failure
        if key not in self.secrets:
            raise SecretNotFoundError(key)
        return self.secrets[key]


@pytest.fixture
def colab(monkeypatch) -> StandInUserdata:
    """Run as if inside Colab: ``google.colab.userdata`` is importable."""
    userdata = StandInUserdata()
    package = types.ModuleType("google.colab")
    package.__path__ = []  # a package, as Colab's is
    package.userdata = userdata  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google.colab", package)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    return userdata


@pytest.fixture
def local_engine(monkeypatch):
    """Whether the offline engine counts as installed, set per test."""
    import soniox_widget.local.shared as shared

    def set_available(available: bool) -> None:
        monkeypatch.setattr(shared, "local_engine_available", lambda: available)

    return set_available


def test_the_key_comes_from_colab_secrets_when_nothing_else_has_one(colab):
    colab.secrets["SONIOX_API_KEY"] = SECRET
    assert find_api_key() == APIKey(SECRET)
    backend = choose_backend()
    assert backend.label == "Soniox" and backend.api_key == APIKey(SECRET)
    assert colab.asked == ["SONIOX_API_KEY", "SONIOX_API_KEY"]


def test_argument_environment_and_dotenv_come_before_colab(colab, monkeypatch, tmp_path):
    colab.secrets["SONIOX_API_KEY"] = SECRET
    assert find_api_key("explicit-key") == APIKey("explicit-key")
    (tmp_path / ".env").write_text("SONIOX_API_KEY=from-dotenv\n")
    assert find_api_key() == APIKey("from-dotenv")
    monkeypatch.setenv("SONIOX_API_KEY", "from-environment")
    assert find_api_key() == APIKey("from-environment")
    assert colab.asked == []  # Colab is not even asked (it may show a consent dialog)


def test_a_newline_pasted_after_the_secret_is_not_part_of_the_key(colab):
    colab.secrets["SONIOX_API_KEY"] = SECRET + "\n"
    assert find_api_key() == APIKey(SECRET)


@pytest.mark.parametrize("failure, advice", [
    (SecretNotFoundError("SONIOX_API_KEY"), "no secret named SONIOX_API_KEY"),
    (NotebookAccessError("SONIOX_API_KEY"), "not given access to the secret SONIOX_API_KEY"),
    (TimeoutException("slow"), "did not answer"),
    (RuntimeError("kernel message failed"), "failed (RuntimeError)"),
])
def test_a_failed_lookup_falls_back_to_the_local_engine_with_a_log_line(
        colab, local_engine, caplog, failure, advice):
    colab.failure = failure
    local_engine(True)
    with caplog.at_level(logging.WARNING, logger="soniox_widget.auth"):
        backend = choose_backend()
    assert backend.is_local and backend.label == LOCAL_LABEL
    lines = [r.getMessage() for r in caplog.records if r.name == "soniox_widget.auth"]
    assert len(lines) == 1
    assert advice in lines[0] and "local engine" in lines[0]


def test_an_empty_secret_counts_as_none(colab, caplog):
    colab.secrets["SONIOX_API_KEY"] = "   "
    with caplog.at_level(logging.WARNING, logger="soniox_widget.auth"):
        assert colab_api_key() is None
    assert "empty" in caplog.text


def test_without_a_key_or_engine_the_error_names_colab_secrets(colab, local_engine):
    local_engine(False)
    with pytest.raises(MissingAPIKeyError, match="Secrets panel") as info:
        choose_backend()
    assert "pip install 'soniox-widget[local]'" in str(info.value)
    with pytest.raises(MissingAPIKeyError, match="notebook access"):
        choose_backend("soniox")
    with pytest.raises(MissingAPIKeyError, match="Secrets panel"):
        require_api_key()


def test_outside_colab_nothing_is_asked_and_the_advice_does_not_mention_it(local_engine):
    assert "google.colab" not in sys.modules
    assert colab_api_key() is None
    local_engine(False)
    with pytest.raises(MissingAPIKeyError) as info:
        choose_backend("soniox")
    assert "Colab" not in str(info.value)


def test_google_colab_installed_outside_colab_is_never_imported(monkeypatch, tmp_path):
    """Only Colab's own kernel has ``google.colab`` loaded. Elsewhere the package may be
    installed, but its ``get`` would wait forever for a front end that never answers."""
    package = tmp_path / "site" / "google" / "colab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "userdata.py").write_text(
        "asked = []\ndef get(key):\n    asked.append(key)\n    return 'sk-should-not-be-read'\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    import importlib.util

    assert importlib.util.find_spec("google.colab") is not None  # importable...
    assert find_api_key() is None  # ...and yet not asked
    assert "google.colab" not in sys.modules


async def test_the_secret_never_reaches_a_log_a_trait_or_the_repr(colab, caplog):
    # async: a widget lives on a running loop (as in a kernel), whatever tests ran before
    # A lookup that fails with the secret in its own message must not spread it.
    colab.failure = RuntimeError(f"could not decode {SECRET}")
    with caplog.at_level(logging.DEBUG):
        assert find_api_key() is None
    assert SECRET not in caplog.text and "RuntimeError" in caplog.text

    colab.failure = None
    colab.secrets["SONIOX_API_KEY"] = SECRET
    rec = SonioxRecorder()
    try:
        assert rec.engine_label.startswith("Soniox")
        assert SECRET not in repr(rec)
        assert SECRET not in repr(rec.get_state())
        assert SECRET not in caplog.text
    finally:
        rec.close()
