"""Citation markers (bot/citations.py): streaming filter, cleaning and attribution by overlap."""

from __future__ import annotations

import pytest

from bot.citations import CitationFilter, attribute, clean_citations


def stream(deltas: list[str], valid=(1, 2, 3)) -> tuple[list[str], str, list[int]]:
    """Each feed's output, finish()'s output and the cited numbers."""
    cleaner = CitationFilter(valid)
    shown = [cleaner.feed(delta) for delta in deltas]
    return shown, cleaner.finish(), cleaner.cited


def streamed_text(deltas: list[str], valid=(1, 2, 3)) -> str:
    shown, tail, _ = stream(deltas, valid)
    return "".join(shown) + tail


# --- streaming ---------------------------------------------------------------------------------


def test_marker_split_across_deltas_is_held_then_completed():
    shown, tail, cited = stream(["Refunds take 7 days [1", "]."])
    assert shown == ["Refunds take 7 days ", "[1]."]
    assert tail == "" and cited == [1]


def test_docstring_example():
    cleaner = CitationFilter(valid={1, 2, 3})
    text = cleaner.feed("Refunds take 7 days [2") + cleaner.feed("][9].") + cleaner.finish()
    assert text == "Refunds take 7 days [2]."
    assert cleaner.cited == [2]


@pytest.mark.parametrize(
    "deltas",
    [
        ["A [1", "2] b"],
        ["A [", "12] b"],
        ["A ", "[", "1", "2", "]", " b"],
        ["A 【1", "2】 b"],
    ],
)
def test_split_points_do_not_matter(deltas):
    assert streamed_text(deltas, valid={12}) == "A [12] b"


def test_complete_marker_at_end_of_delta_waits_for_a_possible_link():
    cleaner = CitationFilter({1})
    assert cleaner.feed("see [1]") == "see "  # "(" could still follow
    assert cleaner.feed(" and more") == "[1] and more"
    assert cleaner.cited == [1]


def test_invalid_numbers_are_removed():
    shown, tail, cited = stream(["A [9] b [2][9] c [0]."])
    assert "".join(shown) + tail == "A  b [2] c ."
    assert cited == [2]


def test_invalid_number_split_across_deltas_is_removed():
    assert streamed_text(["x [", "4", "] y"]) == "x  y"


def test_only_valid_numbers_of_a_group_are_kept():
    text, cited = clean_citations("a [1, 7, 2] b", {1, 2})
    assert text == "a [1][2] b" and cited == [1, 2]


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("x [1, 2] y", "x [1][2] y"),
        ("x [1,2] y", "x [1][2] y"),
        ("x 【3】 y", "x [3] y"),
        ("x 【1，3】 y", "x [1][3] y"),
        ("x [1，2] y", "x [1][2] y"),
        ("x [2、3] y", "x [2][3] y"),
        ("x [1 ,  2] y", "x [1][2] y"),
    ],
)
def test_marker_forms_are_normalized(raw, expected):
    assert streamed_text([raw]) == expected
    assert clean_citations(raw, {1, 2, 3})[0] == expected


@pytest.mark.parametrize(
    "text",
    [
        "see [1](http://x) here",
        "see [text](https://example.com/a?b=1) here",
        "see ![a](b.png) here",
        "see ![1](img/1.png) here",
        "see [1] (spaced) [2]",
    ],
)
def test_markdown_links_and_images_are_untouched(text):
    shown, tail, cited = stream([text])
    assert "".join(shown) + tail == text
    if "[1](" in text:
        assert 1 not in cited


def test_link_split_after_the_bracket_stays_a_link():
    shown, tail, cited = stream(["see [1]", "(http://x) ok"])
    assert "".join(shown) + tail == "see [1](http://x) ok"
    assert cited == []


def test_image_split_inside_alt_text_is_untouched():
    assert streamed_text(["![", "a](b.png) [2]"]) == "![a](b.png) [2]"


def test_cited_in_order_of_first_appearance_without_duplicates():
    shown, tail, cited = stream(["[3] a [1] b ", "[3] c [1][2] [3]"])
    assert cited == [3, 1, 2]
    assert "".join(shown) + tail == "[3] a [1] b [3] c [1][2] [3]"


def test_finish_flushes_a_held_bracket_at_the_end():
    cleaner = CitationFilter({1})
    assert cleaner.feed("the end [") == "the end "
    assert cleaner.finish() == "["
    assert cleaner.finish() == ""  # nothing is held twice


def test_finish_cleans_a_held_complete_marker():
    cleaner = CitationFilter({1})
    assert cleaner.feed("done [1]") == "done "
    assert cleaner.finish() == "[1]"
    assert cleaner.cited == [1]
    cleaner = CitationFilter({1})
    cleaner.feed("done [5]")
    assert cleaner.finish() == "" and cleaner.cited == []


def test_held_text_longer_than_24_chars_is_released():
    long_tail = "[" + "1, " * 9  # 28 characters, could be a marker but is too long
    cleaner = CitationFilter({1})
    assert cleaner.feed("x " + long_tail) == "x " + long_tail
    assert cleaner.finish() == ""
    short_tail = "[" + "1, " * 7  # 22 characters: held
    cleaner = CitationFilter({1})
    assert cleaner.feed("x " + short_tail) == "x "
    assert cleaner.finish() == short_tail


def test_text_without_brackets_streams_through_unchanged():
    deltas = ["退款", "将在七个", "工作日内到账。", " Done."]
    shown, tail, cited = stream(deltas)
    assert shown == deltas and tail == "" and cited == []


def test_every_character_is_emitted_exactly_once():
    text = "A [1] b [2, 3] c [text](u) d 【1】 e [ f"
    deltas = [text[i : i + 3] for i in range(0, len(text), 3)]
    assert streamed_text(deltas) == clean_citations(text, {1, 2, 3})[0]
    assert clean_citations(text, {1, 2, 3})[0] == "A [1] b [2][3] c [text](u) d [1] e [ f"


# --- clean_citations ---------------------------------------------------------------------------


def test_clean_citations():
    assert clean_citations("a [1][5] b [2, 5]. [2]", {1, 2}) == ("a [1] b [2]. [2]", [1, 2])
    assert clean_citations("no markers", {1}) == ("no markers", [])
    assert clean_citations("[1]", []) == ("", [])
    assert clean_citations("ends with [2]", [2]) == ("ends with [2]", [2])


# --- attribute ---------------------------------------------------------------------------------

EN_PASSAGES = {
    1: "Parking\nParking is free for customers.",
    2: "Opening hours\nThe shop opens at 9:00 and closes at 18:00.",
    3: "Refunds\nRefunds are paid within seven working days to the original card.",
}
ZH_PASSAGES = {
    1: "退款\n退款将在七个工作日内原路退回。",
    2: "营业时间\n商店 9:00 开门，18:00 关门。",
    3: "停车\n顾客停车免费。",
}


def test_attribute_english():
    assert attribute("The shop closes at 18:00.", EN_PASSAGES) == [2]
    assert attribute("Refunds are paid within seven working days.", EN_PASSAGES) == [3]


def test_attribute_chinese():
    assert attribute("退款会在七个工作日内原路退回。", ZH_PASSAGES) == [1]
    assert attribute("顾客停车是免费的。", ZH_PASSAGES) == [3]


def test_attribute_nothing_below_threshold():
    assert attribute("I like turtles very much.", EN_PASSAGES) == []
    assert attribute("今天天气很好。", ZH_PASSAGES) == []
    # a real overlap, but below a stricter threshold
    answer = "The shop closes at 18:00, and we also sell lovely turtles."
    assert attribute(answer, EN_PASSAGES) == [2]
    assert attribute(answer, EN_PASSAGES, min_overlap=0.9) == []


def test_attribute_near_equal_passages_are_all_returned_best_first():
    passages = {
        1: "Misc\nParking is free.",
        2: "Warranty\nThe warranty lasts two years from the purchase date.",
        3: "Warranty\nThe warranty lasts two years from purchase.",
    }
    assert attribute("The warranty lasts two years from purchase.", passages) == [3, 2]


def test_attribute_ignores_citation_markers_and_empty_input():
    assert attribute("", EN_PASSAGES) == []
    assert attribute("[1][2]", EN_PASSAGES) == []
    assert attribute("Parking is free.", {}) == []
    # a marker in the answer does not count as overlap with a passage holding "[1]"
    assert attribute("x [1]", {1: "[1] y"}) == []
