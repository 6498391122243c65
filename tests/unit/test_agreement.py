from soniox_widget.local.agreement import (
    TrimPolicy,
    Word,
    agreed_prefix,
    in_order,
    new_words,
    to_tokens,
)


def words(text, start=0.0, step=0.5):
    return [Word(" " + w, start + i * step, start + i * step + 0.4, 0.9)
            for i, w in enumerate(text.split())]


def test_agreement_ignores_case_and_punctuation():
    prev = words("the report to my office.")
    cur = words("The report, to my office before")
    assert agreed_prefix(prev, cur) == 5
    assert agreed_prefix(words("send the"), words("end the")) == 0
    assert agreed_prefix([], cur) == 0


def test_new_words_drops_the_committed_seam_by_time_and_by_text():
    committed = words("please send the report")  # ends at 1.9
    # The next decode repeats the last two committed words with shifted times.
    decode = [Word(" the", 1.05, 1.4), Word(" report", 1.7, 2.0), Word(" to", 2.1, 2.3),
              Word(" my", 2.3, 2.5)]
    assert [w.text for w in new_words(decode, committed)] == [" to", " my"]
    # A new word that starts slightly before the committed end (timestamps wobble) stays.
    wobble = [Word(" tomorrow", 1.75, 2.2)]
    assert [w.text for w in new_words(wobble, committed)] == [" tomorrow"]
    assert new_words(decode, []) == decode


def test_tokens_first_word_without_space_and_times_in_ms():
    toks = to_tokens(words("hello world"), is_final=True, first_in_stream=True)
    assert [t.text for t in toks] == ["hello", " world"]
    assert (toks[1].start_ms, toks[1].end_ms, toks[1].is_final) == (500, 900, True)
    later = to_tokens([Word("again", 3.0, 3.2)], is_final=False, first_in_stream=False)
    assert later[0].text == " again" and later[0].language == "en"


def test_trim_policy_bounds_the_buffer():
    p = TrimPolicy(soft_s=8, anywhere_s=12, hard_s=16)
    pauses = [(3.0, 3.4), (6.5, 7.5)]
    assert p.cut_at(0, 5, committed_end=4, pauses=pauses) is None   # short: keep context
    assert p.cut_at(0, 9, committed_end=6, pauses=pauses) == 3.2    # in the committed pause
    assert p.cut_at(0, 9, committed_end=8, pauses=pauses) == 7.0    # the latest one
    assert p.cut_at(0, 9, committed_end=6) is None                  # no pause: wait...
    assert p.cut_at(0, 13, committed_end=6) == 6                    # ...until it is long
    assert p.cut_at(4, 13, committed_end=6, pauses=pauses) is None  # pause already cut
    assert p.cut_at(4, 17, committed_end=6, pauses=pauses) == 6     # so, once it is long
    assert p.cut_at(10, 19, committed_end=None) is None             # nothing committed yet
    assert p.must_flush(0, 17) and not p.must_flush(0, 15)


def test_final_words_never_go_back_in_time():
    # At a buffer cut Whisper timed the next word 20 ms before the word already sent.
    words = [Word(" the", 5.992, 6.10), Word(" station", 6.20, 6.70)]
    kept = in_order(words, after=6.012)
    assert [(w.start, w.end) for w in kept] == [(6.012, 6.10), (6.20, 6.70)]
    # A word timed wholly before the floor still ends no earlier than it starts.
    assert in_order([Word(" a", 1.0, 1.1), Word(" b", 0.5, 0.6)], None)[1].start == 1.0
    assert in_order([Word(" a", 1.0, 1.1), Word(" b", 0.5, 0.6)], None)[1].end == 1.0
    # Words already in order are left as they are.
    assert in_order(words[1:], after=6.0) == words[1:]
