from soniox_widget.local.agreement import (
    TrimPolicy,
    Word,
    agreed_prefix,
    echoed_tail,
    find_loop,
    in_order,
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


def test_a_decoder_loop_is_found_where_its_second_copy_starts():
    loop = words("it was the age of the age of the age of the age of wisdom", step=0.2)
    assert find_loop(loop, seconds=3.0) == 5          # keeps "it was the age of"
    assert find_loop(words("please " * 6), seconds=3.0) == 1
    # What people say twice, or a word three or four times, is speech.
    assert find_loop(words("fail again fail again fail better"), seconds=3.0) is None
    assert find_loop(words("hello hello hello hello how are you"), seconds=4.0) is None
    assert find_loop(words("it was the best of times it was the worst of times"),
                     seconds=4.0) is None
    # More words than the audio can hold, even without a repeat, is not speech either.
    many = words(" ".join(f"w{i}" for i in range(20)), step=0.05)
    assert find_loop(many, seconds=1.0) == 9
    assert find_loop(many, seconds=4.0) is None
    assert find_loop([], seconds=0.0) is None


def test_a_loop_made_of_one_copy_per_step_is_found_over_the_final_words_too():
    final = words("i don't know why i don't know why")  # two copies, already final
    new = words("i don't know why yeah go for it", start=4.0)
    assert find_loop(new, seconds=4.0) is None           # alone, the step looks fine
    assert find_loop([*final, *new], seconds=8.0, start=len(final)) == 4
    # A repeat wholly among the final words says nothing about the new ones.
    said = words("hello hello hello hello hello")
    assert find_loop([*said, *words("how are you", start=3.0)], seconds=5.0,
                     start=len(said)) is None


def test_an_echo_of_the_known_words_is_measured_from_their_end():
    known = words("ask what you can do for your country.")
    assert echoed_tail(words("you can do for your country. Thank"), known) == 6
    assert echoed_tail(words("and then"), known) == 0
    assert echoed_tail(words("country"), known) == 1
    assert echoed_tail([], known) == 0 and echoed_tail(words("a b"), []) == 0


def test_tokens_first_word_without_space_and_times_in_ms():
    toks = to_tokens(words("hello world"), is_final=True, first_in_stream=True)
    assert [t.text for t in toks] == ["hello", " world"]
    assert (toks[1].start_ms, toks[1].end_ms, toks[1].is_final) == (500, 900, True)
    later = to_tokens([Word("again", 3.0, 3.2)], is_final=False, first_in_stream=False)
    assert later[0].text == " again" and later[0].language == "en"
    # The part of a word Whisper split off stays joined: "ill-disposed", "John's".
    split = to_tokens([Word(" ill", 1.0, 1.2), Word("-disposed", 1.2, 1.7),
                       Word(" John", 2.0, 2.3), Word("'s", 2.3, 2.4)],
                      is_final=True, first_in_stream=False)
    assert "".join(t.text for t in split) == " ill-disposed John's"


def test_trim_policy_keeps_a_second_of_committed_words_and_cuts_between_them():
    p = TrimPolicy(keep_s=1.0, hard_s=12)
    committed = words("one two three four five")  # 0.0-0.4, 0.5-0.9, ... 2.0-2.4
    # The latest gap that leaves at least a second of committed words: after "two".
    assert p.cut_at(0.0, committed) == 0.95
    assert p.cut_at(0.95, committed) is None           # already cut there
    assert p.cut_at(0.0, committed[:2]) is None        # less than a second: keep all
    assert p.cut_at(0.0, committed[:1]) is None
    assert p.must_flush(0, 12.5) and not p.must_flush(0, 11)


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
