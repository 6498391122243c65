"""Recordings of people speaking (tests/data/speech, see its README) and how live
recognition of them is judged: against what was said where that is known, else against
the engine's own whole-file decode of the same audio."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from soniox_widget import SonioxConfig, Transcript, UpstreamSession
from tests import speech

CHUNK_S = 0.12

FOLDER = Path(__file__).parent / "data" / "speech"


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    reference: str | None  # what was said, if known

    @property
    def seconds(self) -> float:
        import av

        with av.open(str(self.path)) as f:
            return f.duration / 1_000_000


def clips(*names: str) -> list[Clip]:
    """The clips (all, or those named), in name order."""
    found = []
    for path in sorted(FOLDER.glob("*.flac")):
        if names and path.stem not in names:
            continue
        text = path.with_suffix(".txt")
        found.append(Clip(path.stem, path, text.read_text().strip() if text.exists() else None))
    return found


def file_decode(engine, path: Path) -> str:
    """The whole file in one offline decode: Whisper's full window, beam 5, as many
    windows as it takes: what the model can do. Without faster-whisper's retries at
    higher temperatures, which sample, so the same file always gives the same text."""
    from soniox_widget.audio import decode_file

    decoded = engine.model().transcribe(decode_file(path), beam_size=5, pad_s=None,
                                        one_window=False, fallback=False)
    return "".join(w.text for w in decoded.words)


def extra_repeats(text: str, *allowed: str, n: int = 3) -> int:
    """Word triples that occur in ``text`` more often than in any of ``allowed`` (what
    was said, the file decode's text), counted by their surplus: a phrase written
    twice where it was said once adds its length. A misheard phrase that was really
    said twice ("old sposed young man" for "ill disposed ...") is no surplus when the
    file decode hears it the same way."""
    def triples(t: str) -> Counter:
        w = speech.normalise(t)
        return Counter(tuple(w[i : i + n]) for i in range(len(w) - n + 1))

    have = triples(text)
    most = Counter()
    for t in allowed:
        for g, c in triples(t).items():
            most[g] = max(most[g], c)
    return sum(c - most[g] for g, c in have.items() if c > most[g] and c > 1)


async def stream_live(url: str, data: bytes, seconds: float) -> tuple[Transcript, list]:
    """Encoded audio as a browser sends a microphone: pieces of 120 ms at real-time
    pace. The transcript, and each reply with the seconds since the first piece."""
    pieces = speech.chunks(data, seconds, CHUNK_S)
    events: list[tuple[float, object]] = []
    t = Transcript()
    async with UpstreamSession(SonioxConfig(), url=url, finish_timeout=120) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def feed() -> None:
            for i, piece in enumerate(pieces):
                session.send_audio(piece)
                await asyncio.sleep(max(0.0, start + (i + 1) * CHUNK_S - loop.time()))
            session.end()

        feeder = asyncio.create_task(feed())
        try:
            async for reply in session.replies():
                events.append((loop.time() - start, reply))
                t.apply(reply)
        finally:
            await asyncio.gather(feeder, return_exceptions=True)
    return t, events
