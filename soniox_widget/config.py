"""What a user may configure for a session, validated before any connection is made.

The same validation runs on both sides: the client checks options before it
connects (so a typo fails at once, with a message that says what to fix), and
the local server checks the start message it receives (so it refuses what Soniox
would refuse, with the same ``error_code`` 400).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ConfigError

DEFAULT_MODEL = "stt-rt-v5"
#: Raw audio rates accepted (telephone 8 kHz down to 1 kHz; studio rates up to 384 kHz).
#: Anything outside is a mistake (a rate in kHz, a byte count), refused with a 400.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000

CONTAINER_FORMATS = frozenset(
    {"auto", "aac", "aiff", "amr", "asf", "flac", "mp3", "ogg", "wav", "webm"}
)
RAW_FORMATS = frozenset(
    [
        f"pcm_{sign}{bits}{end}"
        for sign in "su"
        for bits in (8, 16, 24, 32)
        for end in ("le", "be")
        if not (bits == 8 and end == "be")
    ]
    + ["pcm_s8", "pcm_u8", "pcm_f32le", "pcm_f32be", "pcm_f64le", "pcm_f64be", "mulaw", "alaw"]
)
AUDIO_FORMATS = CONTAINER_FORMATS | RAW_FORMATS

_TRANSLATION_KEYS = {
    "one_way": {"type", "target_language"},
    "two_way": {"type", "language_a", "language_b"},
}
_CONTEXT_KEYS = {"general", "text", "terms", "translation_terms"}


def _closest(name: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(name, choices, n=1)
    return f" Did you mean {match[0]!r}?" if match else ""


@dataclass(frozen=True)
class SonioxConfig:
    """Options of one real-time session (everything in the start message but the key).

    Example::

        SonioxConfig(language_hints=["en"], enable_endpoint_detection=True)
        SonioxConfig(audio_format="pcm_s16le", sample_rate=16000, num_channels=1)
    """

    model: str = DEFAULT_MODEL
    audio_format: str = "auto"
    sample_rate: int | None = None
    num_channels: int | None = None
    language_hints: list[str] = field(default_factory=list)
    language_hints_strict: bool | None = None
    context: dict[str, Any] | str | None = None
    enable_speaker_diarization: bool = False
    enable_language_identification: bool = False
    enable_endpoint_detection: bool = False
    max_endpoint_delay_ms: int | None = None
    translation: dict[str, Any] | None = None
    client_reference_id: str | None = None

    def __post_init__(self) -> None:
        self._validate()

    # -- construction -----------------------------------------------------------

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_options(cls, options: dict[str, Any] | None = None, **more: Any) -> SonioxConfig:
        """Build from keyword options, naming any unknown option and its likely fix."""
        merged = {**(options or {}), **more}
        known = cls.option_names()
        for name in merged:
            if name not in known:
                raise ConfigError(
                    f"unknown option {name!r}.{_closest(name, known)} "
                    f"Known options: {', '.join(known)}."
                )
        return cls(**merged)

    @classmethod
    def from_start_message(cls, message: dict[str, Any]) -> SonioxConfig:
        """Validate a start message the way the Soniox server does (used by ``local/``)."""
        if not isinstance(message, dict):
            raise ConfigError("the start message must be a JSON object")
        opts = {k: v for k, v in message.items() if k != "api_key"}
        if "model" not in opts:
            raise ConfigError("the start message has no 'model'")
        if "audio_format" not in opts:
            raise ConfigError("the start message has no 'audio_format'")
        if opts.get("language_hints") is None:
            opts.pop("language_hints", None)
        return cls.from_options(opts)

    def replace(self, **changes: Any) -> SonioxConfig:
        return SonioxConfig.from_options({**asdict(self), **changes})

    # -- output ---------------------------------------------------------------------

    def to_start_message(self) -> dict[str, Any]:
        """The JSON start message; the API key is *not* part of it (it goes in a header)."""
        msg: dict[str, Any] = {"model": self.model, "audio_format": self.audio_format}
        for f in fields(self):
            if f.name in msg:
                continue
            value = getattr(self, f.name)
            if value is None or value == [] or (value is False and f.name.startswith("enable_")):
                continue
            if f.name == "context" and isinstance(value, str):
                value = {"text": value}
            msg[f.name] = value
        return msg

    @property
    def is_raw_audio(self) -> bool:
        return self.audio_format in RAW_FORMATS

    # -- validation -----------------------------------------------------------------

    def _validate(self) -> None:
        def need(name: str, ok: bool, what: str) -> None:
            if not ok:
                value = getattr(self, name)
                raise ConfigError(f"option {name!r} must be {what}, got {value!r}")

        need("model", isinstance(self.model, str) and bool(self.model.strip()), "a model name")
        need("audio_format", isinstance(self.audio_format, str), "a string")
        if self.audio_format not in AUDIO_FORMATS:
            raise ConfigError(
                f"audio_format {self.audio_format!r} is not supported."
                f"{_closest(self.audio_format, sorted(AUDIO_FORMATS))} Use 'auto' for container "
                "formats (webm, ogg, wav, mp3, flac, ...) or a raw format such as 'pcm_s16le' "
                "together with sample_rate and num_channels."
            )
        for name in ("sample_rate", "num_channels", "max_endpoint_delay_ms"):
            value = getattr(self, name)
            if value is not None:
                need(name, isinstance(value, int) and not isinstance(value, bool) and value > 0,
                     "a positive integer")
        if self.is_raw_audio:
            missing = [n for n in ("sample_rate", "num_channels") if getattr(self, n) is None]
            if missing:
                raise ConfigError(
                    f"audio_format {self.audio_format!r} is raw audio, so the server cannot "
                    f"know its layout: also set {' and '.join(missing)} "
                    f"(e.g. sample_rate=16000, num_channels=1)."
                )
        rate = self.sample_rate
        if rate is not None and not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
            raise ConfigError(
                f"sample_rate must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, got "
                f"{self.sample_rate}; give the audio's own rate (16000, 44100, 48000, ...)")
        if self.num_channels is not None and self.num_channels > 8:
            raise ConfigError(f"num_channels must be between 1 and 8, got {self.num_channels}")
        if self.max_endpoint_delay_ms is not None and not 500 <= self.max_endpoint_delay_ms <= 3000:
            raise ConfigError("max_endpoint_delay_ms must be between 500 and 3000")

        need(
            "language_hints",
            isinstance(self.language_hints, (list, tuple))
            and all(isinstance(x, str) and x for x in self.language_hints),
            "a list of language codes such as ['en', 'de']",
        )
        for name in (
            "enable_speaker_diarization",
            "enable_language_identification",
            "enable_endpoint_detection",
        ):
            need(name, isinstance(getattr(self, name), bool), "True or False")
        if self.language_hints_strict is not None:
            need("language_hints_strict", isinstance(self.language_hints_strict, bool),
                 "True or False")
        if self.client_reference_id is not None:
            need("client_reference_id", isinstance(self.client_reference_id, str)
                 and len(self.client_reference_id) <= 256, "a string of at most 256 characters")
        self._validate_context()
        self._validate_translation()

    def _validate_context(self) -> None:
        ctx = self.context
        if ctx is None or isinstance(ctx, str):
            return
        if not isinstance(ctx, dict):
            raise ConfigError(
                "option 'context' must be a string or an object with keys "
                f"{sorted(_CONTEXT_KEYS)}, got {type(ctx).__name__}"
            )
        unknown = set(ctx) - _CONTEXT_KEYS
        if unknown:
            raise ConfigError(
                f"context has unknown keys {sorted(unknown)}; allowed: {sorted(_CONTEXT_KEYS)}"
            )
        if "text" in ctx and not isinstance(ctx["text"], str):
            raise ConfigError("context['text'] must be a string")
        if "terms" in ctx and not (
            isinstance(ctx["terms"], list) and all(isinstance(t, str) for t in ctx["terms"])
        ):
            raise ConfigError("context['terms'] must be a list of strings")
        for key, parts in (("general", ("key", "value")), ("translation_terms",
                                                            ("source", "target"))):
            if key in ctx and not (
                isinstance(ctx[key], list)
                and all(isinstance(i, dict) and set(i) == set(parts) for i in ctx[key])
            ):
                raise ConfigError(
                    f"context[{key!r}] must be a list of objects with keys {list(parts)}"
                )

    def _validate_translation(self) -> None:
        tr = self.translation
        if tr is None:
            return
        if not isinstance(tr, dict) or tr.get("type") not in _TRANSLATION_KEYS:
            raise ConfigError(
                "option 'translation' must be {'type': 'one_way', 'target_language': 'fr'} "
                "or {'type': 'two_way', 'language_a': 'en', 'language_b': 'es'}"
            )
        expected = _TRANSLATION_KEYS[tr["type"]]
        if set(tr) != expected or not all(isinstance(tr[k], str) and tr[k] for k in expected):
            raise ConfigError(
                f"a {tr['type']} translation needs exactly the keys {sorted(expected)} "
                f"(language codes as strings), got {sorted(tr)}"
            )
