"""decode_bytes, write_audio and ChunkDecoder on synthetic tones encoded with PyAV."""

from __future__ import annotations

import io
import threading
import wave

import av
import numpy as np
import pytest

from soniox_widget.audio import (
    ChunkDecoder,
    DecodeError,
    RawPCMDecoder,
    decode_bytes,
    resample,
    write_audio,
)

SECONDS = 1.5


def tone(freq: float, rate: int, seconds: float = SECONDS, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(
        np.float32)


def encode(samples: np.ndarray, rate: int, fmt: str, codec: str,
           options: dict[str, str] | None = None) -> bytes:
    """Mono float samples → a container in memory, with PyAV."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt, options=options or {}) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = rate
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def read_back(path) -> tuple[str, str, int, int, float]:
    """(container, codec, rate, channels, seconds decoded) of a file, with PyAV."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        n = sum(f.samples for f in c.decode(audio=0))
        return c.format.name, s.codec_context.name, s.rate, s.codec_context.channels, n / s.rate


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


CONTAINERS = {
    "wav 44.1 kHz": ("wav", "pcm_s16le", 44100),
    "flac 48 kHz": ("flac", "flac", 48000),
    "webm/opus": ("webm", "libopus", 48000),
    "live webm/opus (no duration, no cues)": ("webm", "libopus", 48000),
    "ogg/opus": ("ogg", "libopus", 48000),
}


def encoded(name: str, freq: float = 440.0) -> bytes:
    fmt, codec, rate = CONTAINERS[name]
    options = {"live": "1"} if name.startswith("live") else None
    return encode(tone(freq, rate), rate, fmt, codec, options)


# -- decode_bytes --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONTAINERS))
@pytest.mark.parametrize("target", [16000, 22050])
def test_decoded_length_is_duration_times_rate(name, target):
    audio = decode_bytes(encoded(name), target)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SECONDS * target) <= 1
    assert 0.3 < rms(audio) < 0.4  # a 0.5 sine: 0.354, not silence


def test_live_webm_really_has_no_duration():
    with av.open(io.BytesIO(encoded("live webm/opus (no duration, no cues)"))) as c:
        assert c.duration is None


@pytest.mark.parametrize("source", ["wav", "pcm_s16le"])
def test_a_1khz_tone_keeps_its_frequency(source):
    x = tone(1000, 48000)
    if source == "wav":
        audio = decode_bytes(encode(x, 48000, "wav", "pcm_s16le"))
    else:
        pcm = (x * 32767).astype("<i2").tobytes()
        audio = decode_bytes(pcm, audio_format="pcm_s16le", source_rate=48000, num_channels=1)
    assert abs(peak_hz(audio, 16000) - 1000) <= 16000 / len(audio)
    assert abs(rms(audio) - rms(x)) < 0.01


@pytest.mark.parametrize("source", ["wav", "pcm_f32le"])
def test_a_tone_above_the_new_nyquist_is_filtered_out_not_aliased(source):
    """10 kHz at 48 kHz cannot exist at 16 kHz; a plain decimation folds it to 6 kHz."""
    x = tone(10_000, 48000)
    if source == "wav":
        audio = decode_bytes(encode(x, 48000, "wav", "pcm_s16le"))
    else:
        audio = decode_bytes(x.astype("<f4").tobytes(), audio_format="pcm_f32le",
                             source_rate=48000, num_channels=1)
    assert abs(len(audio) - SECONDS * 16000) <= 1
    # Past the first and last few ms (the tone's abrupt start and end are broadband):
    assert rms(audio[100:-100]) < 1e-4 * rms(x)  # below -80 dB (measured: about -100 dB)
    # The old linear interpolation, for contrast: the tone comes back at 6 kHz.
    naive = np.interp(np.linspace(0, len(x) - 1, len(x) // 3), np.arange(len(x)), x)
    assert rms(naive) > 0.5 * rms(x)
    assert abs(peak_hz(naive, 16000) - 6000) < 10


def test_in_band_tones_pass_the_anti_alias_filter():
    for freq in (300, 3000, 6000):
        assert rms(resample(tone(freq, 48000), 48000)) == pytest.approx(0.3536, rel=0.05)


def test_raw_pcm_is_resampled_the_same_however_it_is_cut():
    x = (tone(440, 44100) * 32767).astype("<i2").tobytes()
    whole = decode_bytes(x, audio_format="pcm_s16le", source_rate=44100, num_channels=1)
    dec = RawPCMDecoder("pcm_s16le", 44100, 1)
    pieces = [dec.decode(x[i : i + 777]) for i in range(0, len(x), 777)] + [dec.flush()]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    assert abs(len(whole) - SECONDS * 16000) <= 1


def test_raw_stereo_is_mixed_to_mono():
    left = tone(440, 16000)
    stereo = np.stack([left, np.zeros_like(left)], axis=1).astype("<f4").tobytes()
    audio = decode_bytes(stereo, audio_format="pcm_f32le", source_rate=16000, num_channels=2)
    np.testing.assert_allclose(audio, left / 2, atol=1e-6)


def test_empty_and_undecodable_bytes_say_what_to_check():
    with pytest.raises(DecodeError, match="empty"):
        decode_bytes(b"")
    with pytest.raises(DecodeError, match="Check that these are the bytes"):
        decode_bytes(b"not audio at all " * 100)
    webm = encoded("webm/opus")
    with pytest.raises(DecodeError, match="Check"):
        decode_bytes(webm[len(webm) // 2 :])  # no header: starts mid-stream


def test_raw_formats_need_their_layout():
    with pytest.raises(ValueError, match="source_rate"):
        decode_bytes(b"\0\0" * 100, audio_format="pcm_s16le")
    with pytest.raises(DecodeError, match="cannot be decoded"):
        decode_bytes(b"\0" * 100, audio_format="mulaw", source_rate=8000, num_channels=1)
    with pytest.raises(ValueError, match="sample_rate"):
        decode_bytes(encoded("wav 44.1 kHz"), 0)


# -- write_audio ---------------------------------------------------------------------


@pytest.mark.parametrize("name,suffix", [
    ("webm/opus", ".webm"), ("live webm/opus (no duration, no cues)", ".webm"),
    ("ogg/opus", ".ogg"), ("wav 44.1 kHz", ".wav"), ("flac 48 kHz", ".flac"),
])
def test_the_same_container_is_written_unchanged(tmp_path, name, suffix):
    data = encoded(name)
    path = write_audio(data, tmp_path / f"take{suffix}")
    assert path == tmp_path / f"take{suffix}"
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize("name", ["live webm/opus (no duration, no cues)", "ogg/opus",
                                  "flac 48 kHz"])
def test_a_wav_is_16_bit_pcm_at_the_source_rate(tmp_path, name):
    path = write_audio(encoded(name), tmp_path / "take.wav")
    container, codec, rate, channels, seconds = read_back(path)
    assert (container, codec, rate, channels) == ("wav", "pcm_s16le", CONTAINERS[name][2], 1)
    assert seconds == pytest.approx(SECONDS, abs=1 / rate)
    with wave.open(str(path)) as w:  # the standard library reads it too
        assert (w.getsampwidth(), w.getnchannels()) == (2, 1)


def test_a_flac_from_webm_has_the_same_duration(tmp_path):
    path = write_audio(encoded("webm/opus"), tmp_path / "take.flac")
    container, codec, rate, channels, seconds = read_back(path)
    assert (container, codec, rate, channels) == ("flac", "flac", 48000, 1)
    assert seconds == pytest.approx(SECONDS, abs=1 / rate)


def test_webm_to_ogg_moves_the_opus_audio_over(tmp_path):
    path = write_audio(encoded("live webm/opus (no duration, no cues)"), tmp_path / "t.ogg")
    container, codec, rate, _, seconds = read_back(path)
    assert (container, codec, rate) == ("ogg", "opus", 48000)
    assert seconds == pytest.approx(SECONDS, abs=0.001)


def test_wav_to_webm_is_encoded_as_opus(tmp_path):
    path = write_audio(encoded("wav 44.1 kHz"), tmp_path / "t.webm")
    container, codec, rate, _, seconds = read_back(path)
    assert (container, codec, rate) == ("matroska,webm", "opus", 48000)
    assert seconds == pytest.approx(SECONDS, abs=0.001)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_raw_pcm_is_written_losslessly(tmp_path, suffix, channels):
    x = (np.repeat(tone(440, 22050)[:, None], channels, axis=1) * 32767).astype("<i2")
    path = write_audio(x.tobytes(), tmp_path / f"raw{suffix}", audio_format="pcm_s16le",
                       source_rate=22050, num_channels=channels)
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        assert (s.rate, s.codec_context.channels) == (22050, channels)
        back = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    np.testing.assert_array_equal(back, x.reshape(-1))  # packed s16, sample for sample


def test_raw_pcm_kept_as_is_under_raw_suffix(tmp_path):
    x = (tone(440, 16000) * 32767).astype("<i2").tobytes()
    path = write_audio(x, tmp_path / "a.pcm", audio_format="pcm_s16le", source_rate=16000,
                       num_channels=1)
    assert path.read_bytes() == x


def test_matroska_with_aac_is_not_called_webm(tmp_path):
    data = encode(tone(440, 44100), 44100, "matroska", "aac")
    assert write_audio(data, tmp_path / "a.mka").read_bytes() == data
    path = write_audio(data, tmp_path / "a.webm")  # WebM holds Opus or Vorbis only
    assert read_back(path)[:3] == ("matroska,webm", "opus", 48000)


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder"):
        write_audio(encoded("webm/opus"), tmp_path / "nope" / "take.webm")


def test_an_unsupported_suffix_lists_the_supported_ones(tmp_path):
    with pytest.raises(ValueError) as info:
        write_audio(encoded("webm/opus"), tmp_path / "take.mp3")
    for suffix in (".webm", ".ogg", ".wav", ".flac"):
        assert suffix in str(info.value)
    with pytest.raises(ValueError, match=r"\.mp4"):  # shows the source's own suffix too
        write_audio(encode(tone(440, 44100), 44100, "mp4", "aac"), tmp_path / "take.aiff")
    assert not list(tmp_path.iterdir())


def test_undecodable_bytes_write_nothing(tmp_path):
    with pytest.raises(DecodeError, match="Check"):
        write_audio(b"not audio at all " * 100, tmp_path / "take.wav")
    with pytest.raises(DecodeError, match="empty"):
        write_audio(b"", tmp_path / "take.webm")
    assert not list(tmp_path.iterdir())


# -- ChunkDecoder --------------------------------------------------------------------


def chunk_decode(pieces: list[bytes], **kwargs) -> tuple[np.ndarray, ChunkDecoder, set[str]]:
    parts: list[np.ndarray] = []
    threads: set[str] = set()

    def on_samples(x: np.ndarray) -> None:
        threads.add(threading.current_thread().name)
        parts.append(x)

    dec = ChunkDecoder(on_samples, **kwargs)
    for piece in pieces:
        dec.feed(memoryview(piece))  # as comm buffers arrive
    dec.close()
    assert not dec.alive
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), dec, threads


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("name", ["live webm/opus (no duration, no cues)", "ogg/opus",
                                  "wav 44.1 kHz"])
def test_chunk_decoder_delivers_what_decode_bytes_gives(name):
    data = encoded(name)
    audio, dec, threads = chunk_decode(split(data, 500))
    assert dec.error is None
    np.testing.assert_array_equal(audio, decode_bytes(data))
    assert threading.current_thread().name not in threads  # on the decoder's thread


def test_chunk_decoder_on_raw_pcm():
    x = (tone(440, 48000) * 32767).astype("<i2").tobytes()
    layout = {"audio_format": "pcm_s16le", "source_rate": 48000, "num_channels": 1}
    audio, dec, threads = chunk_decode(split(x, 333), **layout)
    assert dec.error is None
    np.testing.assert_array_equal(audio, decode_bytes(x, **layout))
    assert threading.current_thread().name not in threads


def test_chunk_decoder_reports_undecodable_input():
    audio, dec, _ = chunk_decode([b"not audio at all " * 300])
    assert len(audio) == 0
    assert isinstance(dec.error, DecodeError)


def test_chunk_decoder_survives_a_failing_callback_and_ignores_late_feeds():
    calls = []

    def on_samples(x):
        calls.append(len(x))
        raise RuntimeError("analysis bug")

    dec = ChunkDecoder(on_samples)
    for piece in split(encoded("webm/opus"), 500):
        dec.feed(piece)
    dec.close()
    dec.close()  # twice is fine
    dec.feed(b"late")  # ignored
    assert len(calls) > 1 and dec.error is None and not dec.alive
