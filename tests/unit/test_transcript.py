from soniox_widget.protocol import Reply, Token
from soniox_widget.transcript import Transcript


def reply(*tokens, finished=False):
    return Reply(tokens=tuple(tokens), finished=finished)


def test_final_appends_and_nonfinal_replaces():
    t = Transcript()
    t.apply(reply(Token("Hel", False)))
    assert (t.final_text, t.nonfinal_text) == ("", "Hel")
    d = t.apply(reply(Token("Hello", True, 0, 400), Token(" wor", False)))
    assert d.final_text == "Hello" and d.nonfinal_text == " wor"
    t.apply(reply(Token(" world", True, 450, 800)))
    assert t.final_text == "Hello world"
    assert t.nonfinal_text == ""
    assert t.text == "Hello world"
    assert [tok.start_ms for tok in t.final_tokens] == [0, 450]


def test_special_tokens_become_events_not_text():
    t = Transcript()
    t.apply(reply(Token("One", True), Token("<end>", True, 500), Token(" two", True),
                  Token("<fin>", True)))
    assert t.final_text == "One two"
    assert [(e.kind, e.token_index) for e in t.events] == [("endpoint", 1), ("finalized", 2)]
    assert all(not tok.is_special for tok in t.final_tokens)


def test_speakers_and_languages_form_segments():
    t = Transcript()
    t.apply(reply(Token("Hi", True, speaker="1", language="en"),
                  Token(" there", True, speaker="1", language="en"),
                  Token(" Hola", True, speaker="2", language="es")))
    segs = t.segments()
    assert [(s.text, s.speaker, s.language) for s in segs] == [
        ("Hi there", "1", "en"), (" Hola", "2", "es")]
    assert t.speakers == ["1", "2"] and t.languages == ["en", "es"]


def test_finished_clears_a_stale_guess_and_delta_says_so():
    t = Transcript()
    t.apply(reply(Token(" maybe", False)))
    d = t.apply(reply(finished=True))
    assert t.finished and t.nonfinal_text == "" and d.nonfinal_changed


def test_empty_reply_is_no_change():
    t = Transcript()
    assert not t.apply(reply())
    assert t.to_dict()["final_text"] == ""
