from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from service import evidence
from service.classify import Probabilities
from service.heads import HEADS, Head
from service.normalise import normalise

FILLER = "今天下午我们在公园里散步，看见很多人在跳舞，还有小朋友在放风筝，天气很好，大家都很开心。"


class Planted:
    """A stand-in model: each head's log-odds rise by ``lift`` while its phrase is in the text."""

    def __init__(self, phrases: dict[str, str], base: float = -3.0, lift: float = 6.0) -> None:
        self.phrases, self.base, self.lift = phrases, base, lift
        self.calls: list[int] = []

    def log_odds(self, texts: Sequence[str], heads: Sequence[Head] = HEADS) -> Probabilities:
        self.calls.append(len(texts))
        z = np.full((len(texts), len(HEADS)), -8.0, dtype=np.float32)
        for head, phrase in self.phrases.items():
            present = np.array([phrase in t for t in texts])
            z[:, HEADS.index(head)] = self.base + self.lift * present
        return z

    def predict(self, texts: Sequence[str]) -> Probabilities:
        probs: Probabilities = (1 / (1 + np.exp(-self.log_odds(texts)))).astype(np.float32)
        return probs


def exhaustive(model: Planted, text: str, head: Head) -> list[tuple[int, int]]:
    fine = evidence.fine_windows(len(text))
    return [(s, e) for s, e, _ in evidence.weigh_all(model, text, fine, [head])[head]]


def test_the_grids_cover_the_text() -> None:
    for length in (2, 5, 15, 48, 100, 256):
        fine = evidence.fine_windows(length)
        # about WINDOWS: half steps of a whole number of characters
        assert len(fine) <= evidence.WINDOWS + 3
        assert fine[0][0] == 0 and fine[-1][1] == length
        width = fine[0][1] - fine[0][0]
        assert width >= 2 and all(e - s <= width for s, e in fine)
        coarse = evidence.coarse_windows(length, fine)
        # non-overlapping, in order, covering every character once
        assert [i for s, e in coarse for i in range(s, e)] == list(range(length))


@pytest.mark.parametrize("at", [0, 37, len(FILLER)])
def test_the_search_finds_the_phrase_that_drives_the_score_with_fewer_rows(at: int) -> None:
    text = FILLER[:at] + "求扩散" + FILLER[at:]
    model = Planted({"rumor": "求扩散"})
    found = evidence.search(model, text, ["rumor"])["rumor"]
    assert [(s, e) for s, e, _ in found] == exhaustive(model, text, "rumor")
    ((s, e, weight),) = found
    assert "求扩散" in text[s:e] and e - s <= 3 + 2 * (len(text) // evidence.WINDOWS + 1)
    assert weight == pytest.approx(6.0, abs=1e-3)
    searched = sum(model.calls[:2])  # the search's two calls
    assert len(model.calls) == 3 and searched < model.calls[2]


def test_a_confident_score_keeps_its_spans() -> None:
    # log-odds 12 with the phrase, 4 without: the probability falls by 0.018 only
    model = Planted({"rumor": "封城"}, base=4.0, lift=8.0)
    text = FILLER[:20] + "明天封城" + FILLER[20:]
    p = model.predict([text, text.replace("封城", "")])[:, HEADS.index("rumor")]
    assert p[0] - p[1] < 0.02
    ((s, e, weight),) = evidence.search(model, text, ["rumor"])["rumor"]
    assert "封城" in text[s:e] and weight == pytest.approx(8.0, abs=0.05)


def test_a_score_rounded_to_one_keeps_its_spans() -> None:
    # log-odds 30 with the phrase, 20 without: both probabilities are 1.0 in float32
    model = Planted({"rumor": "封城"}, base=20.0, lift=10.0)
    text = FILLER[:20] + "明天封城" + FILLER[20:]
    assert set(model.predict([text, text.replace("封城", "")])[:, HEADS.index("rumor")]) == {1.0}
    ((s, e, weight),) = evidence.search(model, text, ["rumor"])["rumor"]
    assert "封城" in text[s:e] and weight == pytest.approx(10.0, abs=0.05)


def test_each_head_gets_its_own_phrase_from_shared_calls() -> None:
    text = FILLER[:10] + "求扩散" + FILLER[10:40] + "滚出去" + FILLER[40:]
    model = Planted({"rumor": "求扩散", "incitement": "滚出去"})
    found = evidence.search(model, text, ["rumor", "incitement"])
    assert len(model.calls) == 2
    planted: list[tuple[Head, str]] = [("rumor", "求扩散"), ("incitement", "滚出去")]
    for head, phrase in planted:
        ((s, e, _),) = found[head]
        assert phrase in text[s:e]
        assert all(other not in text[s:e] for _, other in planted if other != phrase)


def test_nothing_that_moves_the_score_gives_no_spans() -> None:
    model = Planted({"rumor": "不在文中"})
    assert evidence.search(model, FILLER, ["rumor"]) == {"rumor": []}
    assert evidence.search(model, "好", ["rumor"]) == {"rumor": []}
    assert evidence.search(model, FILLER, []) == {}


def test_spans_map_back_to_the_text_the_producer_wrote() -> None:
    original = "  全角ＡＢＣ　" + FILLER[:30] + "求扩散！！" + FILLER[30:]
    norm = normalise(original)
    (span,) = evidence.spans(
        Planted({"rumor": "求扩散"}), norm, original, ["rumor"], evidence.Remembered()
    )["rumor"]
    assert original[span.start : span.end] == span.text and "求扩散" in span.text


def test_spans_of_a_separated_run_cover_its_separators_in_the_text_written() -> None:
    original = FILLER[:32] + "求 / 扩 / 散！！" + FILLER[32:]
    norm = normalise(original)
    assert "求扩散" in norm.text
    (span,) = evidence.spans(
        Planted({"rumor": "求扩散"}), norm, original, ["rumor"], evidence.Remembered()
    )["rumor"]
    assert original[span.start : span.end] == span.text and "求 / 扩 / 散" in span.text


def test_a_window_across_a_notice_inside_the_post_is_shown_as_its_two_parts() -> None:
    """The search runs on the text the risk heads read, the notice left out: a phrase that is
    one only there ("封城,所有" closes around "本文为原创。") is weighed, and its window comes back
    as the characters either side of the notice, never the notice's."""
    notice = "本文为原创。"
    original = FILLER[:20] + "明天全市封城，" + notice + "所有超市关门。" + FILLER[20:]
    at = original.index(notice)
    found = evidence.spans(
        Planted({"rumor": "封城,所有"}),
        normalise(original),
        original,
        ["rumor"],
        evidence.Remembered(),
    )["rumor"]
    first, second = found
    assert first.end == at and second.start == at + len(notice)
    assert first.text.endswith("封城，") and second.text.startswith("所有")
    assert all(original[s.start : s.end] == s.text for s in found)
    assert all(s.weight == pytest.approx(6.0, abs=1e-3) for s in found)


def test_a_window_across_notices_gives_no_more_than_max_spans() -> None:
    """Its parts count as spans: a run across three notices made four, one over the limit; the
    strongest windows' parts are kept, in text order."""
    notices = ("本文为原创。", "原创！转载请注明出处。", "版权所有，侵权必究。")
    parts = ("跳封城，", "所有，", "超市，", "关门。")
    original = FILLER[:19] + "".join(p + n for p, n in zip(parts, notices, strict=False))
    original += parts[-1] + FILLER[20:]
    found = evidence.spans(
        Planted({"rumor": "城,所有,超市,关"}),
        normalise(original),
        original,
        ["rumor"],
        evidence.Remembered(),
    )["rumor"]
    assert [s.text for s in found] == list(parts[: evidence.MAX_SPANS])
    assert all(original[s.start : s.end] == s.text for s in found)


def test_posts_that_differ_in_their_notices_alone_are_searched_once() -> None:
    """What is searched, and remembered, is the text without its notices; each post's spans
    are mapped to its own text."""
    model = Planted({"rumor": "求扩散"})
    remembered = evidence.Remembered()
    post = FILLER[:30] + "求扩散！！" + FILLER[30:]
    found = {}
    for notice in ("本文为原创。", "原创！转载请注明出处。"):
        original = notice + post
        (span,) = evidence.spans(model, normalise(original), original, ["rumor"], remembered)[
            "rumor"
        ]
        assert original[span.start : span.end] == span.text and "求扩散" in span.text
        found[notice] = span.start - len(notice)
    assert len(model.calls) == 2  # the first post's search
    assert len(set(found.values())) == 1


def test_copies_of_a_text_are_searched_once_and_the_oldest_is_forgotten() -> None:
    model = Planted({"rumor": "求扩散", "incitement": "滚出去"})
    remembered = evidence.Remembered(size=2)
    first = FILLER[:10] + "求扩散" + FILLER[10:40] + "滚出去" + FILLER[40:]
    found = remembered.search(model, first, ["rumor"])
    calls = len(model.calls)
    assert remembered.search(model, first, ["rumor"]) == found
    assert len(model.calls) == calls
    # a head not searched before is searched alone; both are then remembered
    both = remembered.search(model, first, ["rumor", "incitement"])
    assert both["rumor"] == found["rumor"]
    assert both == evidence.search(Planted(model.phrases), first, ["rumor", "incitement"])
    calls = len(model.calls)
    remembered.search(model, first, ["incitement", "rumor"])
    assert len(model.calls) == calls
    # a third (text, head) pushes out the least recently used: incitement, asked first
    remembered.search(model, FILLER + "求扩散", ["rumor"])
    calls = len(model.calls)
    remembered.search(model, first, ["rumor"])
    assert len(model.calls) == calls
    remembered.search(model, first, ["incitement"])
    assert len(model.calls) > calls


class Recorded(Planted):
    """:class:`Planted`, keeping the texts of each call."""

    def __init__(self, phrases: dict[str, str]) -> None:
        super().__init__(phrases)
        self.texts: list[list[str]] = []

    def log_odds(self, texts: Sequence[str], heads: Sequence[Head] = HEADS) -> Probabilities:
        self.texts.append(list(texts))
        return super().log_odds(texts, heads)


def test_the_text_itself_is_run_once_a_search() -> None:
    text = FILLER[:37] + "求扩散" + FILLER[37:]
    model = Recorded({"rumor": "求扩散"})
    found = evidence.search(model, text, ["rumor"])["rumor"]
    assert len(model.texts) == 2
    assert sum(t == text for call in model.texts for t in call) == 1
    # the second call's drops are taken from the first call's log-odds of the text
    assert [(s, e) for s, e, _ in found] == exhaustive(Planted(model.phrases), text, "rumor")
    assert found[0][2] == pytest.approx(6.0, abs=1e-3)


class GivenBack(Planted):
    """Rumor log-odds high while "求扩散" is whole or "急" gone, incitement's while "急" is there:
    hiding "求扩散急" together gives the rumor score back, so no coarse window shows it."""

    def log_odds(self, texts: Sequence[str], heads: Sequence[Head] = HEADS) -> Probabilities:
        self.calls.append(len(texts))
        z = np.full((len(texts), len(HEADS)), -8.0, dtype=np.float32)
        z[:, HEADS.index("rumor")] = [
            3.0 if "求扩散" in t or "急" not in t else -3.0 for t in texts
        ]
        z[:, HEADS.index("incitement")] = [3.0 if "急" in t else -3.0 for t in texts]
        return z


def test_a_head_reads_the_windows_weighed_for_another() -> None:
    # 求扩散急 fills the coarse window at 40 (four characters: fine windows of two)
    text = FILLER[:40] + "求扩散急" + FILLER[40:]
    fine = evidence.fine_windows(len(text))
    assert (40, 44) in evidence.coarse_windows(len(text), fine)
    model = GivenBack({})
    coarse = evidence.coarse_windows(len(text), fine)
    assert evidence.log_odds_drops(model, text, coarse, ["rumor"]).max() == 0
    found = evidence.search(model, text, ["rumor", "incitement"])
    every = evidence.weigh_all(model, text, fine, ["rumor", "incitement"])
    assert found == every
    ((s, e, weight),) = found["rumor"]
    assert "求扩" in text[s:e] and "急" not in text[s:e] and weight == pytest.approx(6.0)
