import pickle

import pytest

from soniox_widget.auth import APIKey, find_api_key, require_api_key
from soniox_widget.errors import MissingAPIKeyError

SECRET = "sk-test-0123456789abcdef"


def test_key_never_shows_in_repr_or_str():
    key = APIKey(SECRET)
    assert SECRET not in repr(key) and SECRET not in str(key) and SECRET not in f"{key}"
    assert SECRET not in repr({"k": key})
    with pytest.raises(TypeError):
        pickle.dumps(key)
    assert key.authorization_header() == {"Authorization": f"Bearer {SECRET}"}
    assert key.redact(f"bad key {SECRET}!") == "bad key ***!"


def test_argument_then_environment_then_dotenv(monkeypatch, tmp_path):
    assert find_api_key() is None
    (tmp_path / ".env").write_text(f"SONIOX_API_KEY={SECRET}-dotenv\n")
    assert find_api_key() == APIKey(SECRET + "-dotenv")
    monkeypatch.setenv("SONIOX_API_KEY", SECRET + "-env")
    assert find_api_key() == APIKey(SECRET + "-env")
    assert find_api_key("explicit") == APIKey("explicit")


def test_dotenv_does_not_change_the_environment(tmp_path):
    import os

    (tmp_path / ".env").write_text(f"SONIOX_API_KEY={SECRET}\n")
    assert find_api_key() is not None
    assert "SONIOX_API_KEY" not in os.environ


def test_missing_key_says_where_to_put_one():
    with pytest.raises(MissingAPIKeyError, match=r"SONIOX_API_KEY.*\.env"):
        require_api_key()
    with pytest.raises(MissingAPIKeyError, match="line break"):
        APIKey("abc\ndef")
