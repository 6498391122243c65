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


def translated(text, language="es"):
    return Token(text, True, translation_status="translation", language=language,
                 source_language="en")


def test_translated_tokens_stay_out_of_the_spoken_text_and_its_event_indexes():
    t = Transcript()
    d = t.apply(reply(Token("Hi", True, 0, 200, translation_status="original"),
                      translated("Hola"), Token("<end>", True),
                      Token(" there", False, translation_status="original"),
                      Token(" a", False, translation_status="translation")))
    assert (t.final_text, t.nonfinal_text) == ("Hi", " there")
    assert (t.translation_text, t.nonfinal_translation_text) == ("Hola", " a")
    assert [tok.text for tok in t.final_tokens] == ["Hi"]
    assert [tok.text for tok in t.translation_tokens] == ["Hola"]
    assert d.final_text == "Hi" and d.final_translation_text == "Hola"
    assert d.nonfinal_text == " there" and d.nonfinal_translation_text == " a"
    assert [(e.kind, e.token_index) for e in t.events] == [("endpoint", 1)]
    assert t.text == "Hi there"


def test_a_translation_only_change_is_a_change():
    t = Transcript()
    t.apply(reply(Token("Hi", True, 0, 200, translation_status="original")))
    assert t.apply(reply(Token("Ho", False, translation_status="translation")))
    assert not t.apply(reply(Token("Ho", False, translation_status="translation")))
    assert t.apply(reply(translated("Hola")))


def test_finished_clears_a_stale_translation_guess():
    t = Transcript()
    t.apply(reply(Token(" Hola", False, translation_status="translation")))
    d = t.apply(reply(finished=True))
    assert t.nonfinal_translation_text == "" and d.nonfinal_translation_changed


def test_a_word_split_across_replies_is_one_word():
    t = Transcript()
    t.apply(reply(Token("Wonder", True, 0, 300)))
    t.apply(reply(Token("ful", True, 300, 500), Token(".", True, 500, 510)))
    assert [(w["word"], w["start_ms"], w["end_ms"]) for w in t.words()] == [
        ("Wonderful.", 0, 510)]


def test_a_marker_between_tokens_keeps_words_apart():
    t = Transcript()
    t.apply(reply(Token("Hello", True, 0, 300), Token("<fin>", True),
                  Token("world", True, 400, 700), Token("<end>", True),
                  Token("今日", True, 800, 900), Token("<fin>", True),
                  Token("は", True, 900, 950), Token("<end>", True)))
    assert [w["word"] for w in t.words()] == ["Hello", "world", "今日", "は"]
    assert [u.text for u in t.utterances] == ["Hello world", "今日は"]


def test_to_dict_exports_no_guess():
    t = Transcript()
    t.apply(reply(Token("Hi", True, 0, 200), Token(" maybe", False)))
    assert "maybe" not in str(t.to_dict())
