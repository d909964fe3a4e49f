"""The citation verifier on hand-made sentences and sources (real embedding model), and its calibration."""

from __future__ import annotations

import pytest

from assistant.embed import Embedder
from assistant.prompting import PackedPassage
from assistant.settings import Settings
from assistant.types import Passage
from assistant.verify import Pair, Verifier, assemble, choose_threshold, split_claims

DOC = ("Intro line.\nThe harbour of Vessa was rebuilt in 1954 after a storm destroyed the old pier. "
       "The new pier is 420 metres long and was designed by engineer Tove Rask.")
BAKERY = "The Lindqvist bakery opened in 1988 on Canal Street. It sells about 600 loaves every Saturday."


def _sources() -> list[PackedPassage]:
    start = DOC.index("The harbour")
    harbour = Passage(1, "d1", "Harbour", "/docs/harbour.txt", start, len(DOC), DOC[start:], 0.9)
    bakery = Passage(2, "d2", "Bakery", "/docs/bakery.txt", 0, len(BAKERY), BAKERY, 0.5)
    return [PackedPassage(1, harbour, harbour.text), PackedPassage(2, bakery, bakery.text)]


@pytest.fixture(scope="module")
def verifier(embedder: Embedder) -> Verifier:
    return Verifier(embedder, Settings().verify_threshold)


def test_markers_are_parsed_wherever_models_put_them() -> None:
    claims = split_claims("The pier is long [1]. It was rebuilt in 1954.[1][2] Bakeries sell bread [2, 3].\n[4]\n"
                          "According to source [2], the bakery opened in 1988. Source [1] says that Tove Rask designed it.")
    assert [(c.text, c.cited) for c in claims] == [
        ("The pier is long.", [1]), ("It was rebuilt in 1954.", [1, 2]), ("Bakeries sell bread.", [2, 3, 4]),
        ("The bakery opened in 1988.", [2]), ("Tove Rask designed it.", [1])]


def test_supported_paraphrase_passes_and_the_span_is_the_exact_source_sentence(verifier: Verifier) -> None:
    sources = _sources()
    v = verifier.verify("Engineer Tove Rask designed the new pier, which is 420 metres long [1].", sources)
    claim = v.claims[0]
    assert claim.supported, claim.supports
    out = assemble(v, sources)
    c = out.citations[0]
    assert out.text == "Engineer Tove Rask designed the new pier, which is 420 metres long. [1]"
    assert DOC[c.start : c.end] == c.quote == "The new pier is 420 metres long and was designed by engineer Tove Rask."


def test_wrong_number_wrong_source_and_no_citation_are_unsupported(verifier: Verifier) -> None:
    sources = _sources()
    v = verifier.verify("The new pier is 520 metres long [1]. The bakery is on Canal Street [1]. "
                        "The pier was designed by Tove Rask. The harbour was rebuilt in 1954 [7].", sources)
    reasons = [c.reason for c in v.claims]
    assert not any(c.supported for c in v.claims)
    assert reasons[0] == "a number is not in cited source [1]"
    assert reasons[1].startswith("support ") and "cited source [1]" in reasons[1]
    assert reasons[2] == "no citation"
    assert reasons[3] == "cites no existing source" and v.claims[3].dropped == [7]


def test_a_sentence_citing_a_right_and_a_wrong_source_keeps_only_the_right_one(verifier: Verifier) -> None:
    sources = _sources()
    out = assemble(verifier.verify("The bakery sells about 600 loaves every Saturday [1][2].", sources), sources)
    assert out.text == "The bakery sells about 600 loaves every Saturday. [1]"
    assert out.citations[0].chunk_id == 2 and out.citations[0].quote == "It sells about 600 loaves every Saturday."
    assert out.dropped_citations == [{"n": 1, "sentence": "The bakery sells about 600 loaves every Saturday.",
                                      "reason": "does not support the sentence", "score": pytest.approx(0.3, abs=0.3)}]


def test_policy_marks_or_removes_and_repeats_are_said_once(verifier: Verifier) -> None:
    sources = _sources()
    draft = "The new pier was designed by engineer Tove Rask [1]. The pier is made of gold [1]. " \
            "The new pier was designed by engineer Tove Rask [1]."
    marked = assemble(verifier.verify(draft, sources), sources, "mark")
    assert marked.text == "The new pier was designed by engineer Tove Rask. [1] The pier is made of gold. [unverified]"
    u = marked.unsupported[0]
    assert marked.text[u["start"] : u["end"]] == "The pier is made of gold."
    removed = assemble(verifier.verify(draft, sources), sources, "remove")
    assert removed.text == "The new pier was designed by engineer Tove Rask. [1]"
    assert removed.unsupported[0]["sentence"] == "The pier is made of gold." and "start" not in removed.unsupported[0]
    with pytest.raises(ValueError, match="mark"):
        assemble(verifier.verify(draft, sources), sources, "hide")


def test_the_no_answer_sentence_is_an_abstention(verifier: Verifier) -> None:
    no_answer = "I could not find an answer to that in the indexed documents."
    assert verifier.verify(no_answer, _sources(), no_answer).abstained
    assert not verifier.verify("The pier is long [1].", _sources(), no_answer).abstained


def test_threshold_choice_separates_classes_and_prefers_the_widest_gap() -> None:
    pairs = [Pair("a", "s", True, score) for score in (0.8, 0.85, 0.9, 0.95)]
    pairs += [Pair("b", "s", False, score) for score in (0.1, 0.3, 0.5, 0.6)]
    pairs.append(Pair("c", "s", False, 0.99, numbers_ok=False))  # rejected by the number rule anyway
    chosen = choose_threshold(pairs)
    assert chosen["threshold"] == 0.7 and chosen["false_positives"] == 0 and chosen["false_negatives"] == 0
    overlap = choose_threshold(pairs + [Pair("d", "s", False, 0.82)])
    assert overlap["false_positives"] == 0  # a false support costs twice a held-back good sentence
