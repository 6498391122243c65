"""A deterministic engine for tests: it does not listen, it counts bytes.

Every ``bytes_per_word`` bytes of audio reveal one word: first as a non-final
token, then final once the next word is revealed (or on finalize / end of
stream), with made-up but realistic timings. The words come from a caller-given
script, or, without one, are derived from the audio bytes themselves, so a test
can predict the transcript of any audio with :meth:`ScriptedEngine.text_for`.

It is labelled as what it is and is never offered to users as transcription.
"""

from __future__ import annotations

import zlib

from ..config import SonioxConfig
from ..protocol import END_TOKEN, FIN_TOKEN, Token
from .engine import Engine, EngineError, EngineStream, EngineUpdate

VOCABULARY = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


class ScriptedEngine(Engine):
    """Deterministic test engine; see the module docstring.

    Args:
        script: words to emit in order (stops when used up); None derives words
            from the audio bytes.
        bytes_per_word: audio bytes that reveal one word.
        ms_per_word: the made-up duration of a word, for start_ms/end_ms.
        words_per_utterance: with endpoint detection, an ``<end>`` after this many words.
        fail_after_bytes: send ``fail_code`` once this much audio arrived (error tests).
    """

    label = "scripted test engine (not transcription)"
    transcribes = False

    def __init__(
        self,
        script: str | None = None,
        *,
        bytes_per_word: int = 2000,
        ms_per_word: int = 400,
        words_per_utterance: int = 5,
        fail_after_bytes: int | None = None,
        fail_code: int = 503,
        fail_message: str = "Cannot continue request (code N/A). Please restart the request.",
    ) -> None:
        if bytes_per_word <= 0:
            raise ValueError("bytes_per_word must be positive")
        self.script = script.split() if script is not None else None
        self.bytes_per_word = bytes_per_word
        self.ms_per_word = ms_per_word
        self.words_per_utterance = words_per_utterance
        self.fail_after_bytes = fail_after_bytes
        self.fail_code = fail_code
        self.fail_message = fail_message

    def word_at(self, index: int, block: bytes) -> str | None:
        if self.script is not None:
            return self.script[index] if index < len(self.script) else None
        return VOCABULARY[zlib.crc32(block) % len(VOCABULARY)]

    def words_for(self, audio: bytes) -> list[str]:
        """The words this engine emits for ``audio`` sent in one session."""
        out = []
        for i in range(len(audio) // self.bytes_per_word):
            word = self.word_at(i, audio[i * self.bytes_per_word : (i + 1) * self.bytes_per_word])
            if word is None:
                break
            out.append(word)
        return out

    def text_for(self, audio: bytes) -> str:
        return "".join(" " + w if i else w for i, w in enumerate(self.words_for(audio)))

    def check_config(self, config: SonioxConfig) -> None:
        if config.translation is not None:
            raise EngineError(400, "the scripted test engine does not translate")

    def open_stream(self, config: SonioxConfig) -> EngineStream:
        return ScriptedStream(self, config)


class ScriptedStream(EngineStream):
    def __init__(self, engine: ScriptedEngine, config: SonioxConfig) -> None:
        super().__init__()
        self.engine = engine
        self.config = config
        self.pending = bytearray()  # bytes of the block being filled
        self.bytes_seen = 0
        self.revealed: list[str] = []
        self.final_count = 0
        self.words_since_end = 0
        self.utterance = 0
        self.failed = False
        self.script_done = False

    def _token(self, index: int, is_final: bool) -> Token:
        eng = self.engine
        start = index * eng.ms_per_word + 40
        word = self.revealed[index]
        return Token(
            text=word if index == 0 else " " + word,
            is_final=is_final,
            start_ms=start,
            end_ms=start + eng.ms_per_word - 80,
            confidence=round(0.8 + (zlib.crc32(word.encode()) % 20) / 100, 2),
            speaker=str(self.utterance % 2 + 1) if self.config.enable_speaker_diarization
            else None,
            language="en" if self.config.enable_language_identification else None,
        )

    def _commit(self, upto: int) -> list[Token]:
        """Make revealed words [final_count, upto) final, with <end> after each utterance."""
        out: list[Token] = []
        for i in range(self.final_count, upto):
            out.append(self._token(i, True))
            self.words_since_end += 1
            if (self.config.enable_endpoint_detection
                    and self.words_since_end >= self.engine.words_per_utterance):
                out.append(Token(END_TOKEN, True))
                self.words_since_end = 0
                self.utterance += 1
        self.final_count = upto
        return out

    def _ms(self, words: int) -> int:
        return words * self.engine.ms_per_word

    def _update(self, final: list[Token]) -> None:
        nonfinal = [self._token(i, False) for i in range(self.final_count, len(self.revealed))]
        if final or nonfinal:
            self._emit(EngineUpdate(final, nonfinal, self._ms(self.final_count),
                                    self._ms(len(self.revealed))))

    async def push_audio(self, data: bytes) -> None:
        if self.failed:
            return
        eng = self.engine
        self.bytes_seen += len(data)
        if eng.fail_after_bytes is not None and self.bytes_seen >= eng.fail_after_bytes:
            self.failed = True
            self._fail(EngineError(eng.fail_code, eng.fail_message))
            return
        self.pending.extend(data)
        while len(self.pending) >= eng.bytes_per_word and not self.script_done:
            block = bytes(self.pending[: eng.bytes_per_word])
            del self.pending[: eng.bytes_per_word]
            word = eng.word_at(len(self.revealed), block)
            if word is None:
                self.script_done = True
                break
            self.revealed.append(word)
        if self.script_done:
            self.pending.clear()
        # Everything but the newest word is settled.
        self._update(self._commit(max(self.final_count, len(self.revealed) - 1)))

    async def finalize(self, trailing_silence_ms: int | None = None) -> None:
        if self.failed:
            return
        final = self._commit(len(self.revealed))
        final.append(Token(FIN_TOKEN, True))
        self._update(final)

    async def end(self) -> None:
        if self.failed:
            return
        self._update(self._commit(len(self.revealed)))
        self._done()
