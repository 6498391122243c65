import pytest

from soniox_widget import ConfigError, SonioxConfig
from soniox_widget.backend import choose_backend
from soniox_widget.config import DEFAULT_MODEL
from soniox_widget.errors import MissingAPIKeyError
from soniox_widget.protocol import DEFAULT_WS_URL


def test_defaults_make_a_minimal_start_message_without_a_key():
    msg = SonioxConfig().to_start_message()
    assert msg == {"model": DEFAULT_MODEL, "audio_format": "auto"}
    assert "api_key" not in msg


def test_all_options_reach_the_start_message():
    cfg = SonioxConfig(
        language_hints=["en", "de"],
        context="medical terms",
        enable_speaker_diarization=True,
        enable_language_identification=True,
        enable_endpoint_detection=True,
        translation={"type": "one_way", "target_language": "fr"},
        client_reference_id="abc",
    )
    msg = cfg.to_start_message()
    assert msg["language_hints"] == ["en", "de"]
    assert msg["context"] == {"text": "medical terms"}
    assert msg["enable_speaker_diarization"] is True
    assert msg["translation"] == {"type": "one_way", "target_language": "fr"}
    assert msg["client_reference_id"] == "abc"


def test_unknown_option_names_the_likely_fix():
    with pytest.raises(ConfigError, match=r"unknown option 'langauge_hints'.*'language_hints'"):
        SonioxConfig.from_options({"langauge_hints": ["en"]})


def test_wrong_type_says_what_is_expected():
    with pytest.raises(ConfigError, match=r"language_hints.*list of language codes"):
        SonioxConfig(language_hints="en")
    with pytest.raises(ConfigError, match=r"enable_endpoint_detection.*True or False"):
        SonioxConfig(enable_endpoint_detection="yes")


def test_raw_audio_needs_sample_rate_and_channels():
    with pytest.raises(ConfigError, match="sample_rate and num_channels"):
        SonioxConfig(audio_format="pcm_s16le")
    with pytest.raises(ConfigError, match="num_channels"):
        SonioxConfig(audio_format="pcm_s16le", sample_rate=16000)
    cfg = SonioxConfig(audio_format="pcm_s16le", sample_rate=16000, num_channels=1)
    assert cfg.to_start_message()["sample_rate"] == 16000


def test_unknown_audio_format_suggests_one():
    with pytest.raises(ConfigError, match="'pcm_s16le'"):
        SonioxConfig(audio_format="pcm_s16")


@pytest.mark.parametrize("translation", [
    {"type": "one_way"},
    {"type": "sideways", "target_language": "fr"},
    {"type": "two_way", "language_a": "en"},
    "fr",
])
def test_bad_translation_is_refused(translation):
    with pytest.raises(ConfigError, match="translation"):
        SonioxConfig(translation=translation)


def test_context_object_is_checked():
    SonioxConfig(context={"terms": ["Soniox"], "general": [{"key": "domain", "value": "x"}]})
    with pytest.raises(ConfigError, match="unknown keys"):
        SonioxConfig(context={"vocabulary": ["x"]})
    with pytest.raises(ConfigError, match="terms"):
        SonioxConfig(context={"terms": "Soniox"})


def test_start_message_validation_like_the_server():
    with pytest.raises(ConfigError, match="no 'model'"):
        SonioxConfig.from_start_message({"audio_format": "auto"})
    cfg = SonioxConfig.from_start_message({"model": "stt-rt-v5", "audio_format": "auto",
                                           "language_hints": None})
    assert cfg.language_hints == []


def test_replace_validates_again():
    cfg = SonioxConfig()
    with pytest.raises(ConfigError):
        cfg.replace(audio_format="pcm_s16le")


def test_url_from_argument_env_or_default(monkeypatch):
    monkeypatch.setenv("SONIOX_API_KEY", "k-1")
    assert choose_backend().url == DEFAULT_WS_URL
    monkeypatch.setenv("SONIOX_WS_URL", "wss://stt-rt.eu.soniox.com/transcribe-websocket")
    assert "eu" in choose_backend().url
    assert choose_backend(url="ws://127.0.0.1:1/x").url == "ws://127.0.0.1:1/x"
    with pytest.raises(ConfigError, match="ws:// or wss://"):
        choose_backend(url="http://example.invalid/")


def test_the_key_decision_parses_the_host_not_the_string(monkeypatch):
    # A regional Soniox host needs a key; a look-alike host does not get one.
    with pytest.raises(MissingAPIKeyError):
        choose_backend(url="wss://stt-rt.jp.soniox.com/transcribe-websocket")
    b = choose_backend(url="ws://soniox.com.example.invalid:9/transcribe-websocket")
    assert b.label == "server at soniox.com.example.invalid:9" and b.api_key is None
    with pytest.raises(ConfigError, match="wss://"):
        choose_backend(url="ws://stt-rt.soniox.com/transcribe-websocket", api_key="k")
    with pytest.raises(ConfigError, match="credentials"):
        choose_backend(url="wss://user:pw@example.invalid/x")
    with pytest.raises(ConfigError, match="invalid port"):
        choose_backend(url="ws://127.0.0.1:99999/x")


def test_host_values_are_parsed_exactly():
    from soniox_widget.access import split_host

    assert split_host("Example.com:3001") == ("example.com", 3001)
    assert split_host("localhost") == ("localhost", None)
    assert split_host("[::1]:8888") == ("::1", 8888)
    assert split_host("127.0.0.1:") == ("127.0.0.1", None)  # RFC 3986: the port may be empty
    for bad in ("127.0.0.1:1#@evil.example", "127.0.0.1:1?x", "a b", "user@host", "",
                "host:65536", "[::g]", "host/path", "ho%73t", "[::1", "host:1:2"):
        assert split_host(bad) is None, bad


@pytest.mark.parametrize("options, fix", [
    ({"sample_rate": 10**30}, "sample_rate must be between 1000 and 384000"),
    ({"sample_rate": 16}, "sample_rate must be between"),
    ({"num_channels": 9}, "num_channels must be between 1 and 8"),
    ({"max_endpoint_delay_ms": 10**9}, "max_endpoint_delay_ms must be between"),
    ({"client_reference_id": "x" * 300}, "at most 256"),
])
def test_every_numeric_start_message_field_has_an_upper_bound(options, fix):
    message = {"model": "stt-rt-v5", "audio_format": "pcm_s16le", "sample_rate": 16000,
               "num_channels": 1, **options}
    with pytest.raises(ConfigError, match=fix):
        SonioxConfig.from_start_message(message)


def test_a_finalize_says_at_most_a_minute_of_silence():
    from soniox_widget.protocol import ProtocolError, parse_client_message

    assert parse_client_message('{"type": "finalize", "trailing_silence_ms": 60000}')
    with pytest.raises(ProtocolError, match="non-negative integer of at most 60000"):
        parse_client_message('{"type": "finalize", "trailing_silence_ms": 1000000000}')
