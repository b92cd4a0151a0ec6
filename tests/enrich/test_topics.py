"""Watched-topic matching with the real all-MiniLM-L6-v2: realistic headlines, hard negatives."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enrich.embed import Embedder, article_text
from enrich.topics import TopicMatcher, TopicScore, best_scores, keyword_pattern
from storywatch.settings.enrich import EnrichSettings, TopicMatchSettings, WatchedTopic

THRESHOLD = EnrichSettings().topic_threshold

TOPICS = [
    WatchedTopic(
        name="missile launches",
        description=(
            "A country test-fires or launches ballistic, cruise or hypersonic missiles, for example "
            "North Korea firing missiles toward Japan or into the sea."
        ),
        examples=[
            "North Korea fires ballistic missile into the sea off its east coast",
            "Missile launch detected, Japan issues warning to residents",
            "Iran test-fires new medium-range ballistic missile",
        ],
        counter_examples=[
            "Rocket company launches communications satellites into orbit",
            "Company launches new smartphone model",
        ],
        severity="high",
    ),
    WatchedTopic(
        name="earthquakes",
        description="A strong earthquake strikes, causing damage, casualties or a tsunami warning.",
        examples=["Magnitude 7.1 earthquake strikes off the coast, tsunami warning issued"],
    ),
    WatchedTopic(
        name="national elections",
        description="Voting, results and outcomes of national presidential or parliamentary elections.",
        examples=["Voters head to the polls in presidential election"],
    ),
    WatchedTopic(
        name="central bank rates",
        description="A central bank raises, cuts or holds its benchmark interest rate.",
    ),
]

# (title, lead, the topic it is about or None)
CASES = [
    ("North Korea launches two short-range ballistic missiles, Seoul says",
     "South Korea's military said the missiles flew about 400 km before landing in the sea.", "missile launches"),
    ("Pakistan test-fires nuclear-capable Ghauri missile",
     "The military said the training launch tested operational readiness.", "missile launches"),
    ("Japan issues J-Alert as projectile flies over Hokkaido",
     "Residents were told to take shelter after North Korea launched a ballistic missile.", "missile launches"),
    ("SpaceX launches 23 Starlink satellites from Cape Canaveral",
     "The Falcon 9 first stage landed on a droneship after the launch.", None),
    ("Apple launches the iPhone 16 with a new camera button",
     "The company unveiled its latest phones at an event in Cupertino.", None),
    ("Chiefs launch fourth-quarter comeback to beat Ravens",
     "Patrick Mahomes threw two touchdown passes in the final quarter.", None),
    ("Rocket Lab Electron launch delivers NASA payload to orbit",
     "The small rocket lifted off from New Zealand carrying a weather satellite.", None),
    ("Strong 6.8 magnitude earthquake hits Morocco, hundreds dead",
     "The quake struck the High Atlas mountains, toppling buildings in villages.", "earthquakes"),
    ("Tsunami warning lifted after powerful quake off Japan",
     "Waves of up to one metre reached the coast of Ishikawa prefecture.", "earthquakes"),
    ("Stock market quake: shares tumble as tech selloff deepens",
     "The Nasdaq fell four percent in its worst day since 2022.", None),
    ("Polls open in India's general election, the world's largest",
     "Nearly a billion people are eligible to vote over six weeks.", "national elections"),
    ("Candidate concedes after narrow loss in presidential runoff",
     "The incumbent won 51 percent of the vote, the electoral commission said.", "national elections"),
    ("Company board elects new chairman", "The former finance chief will take over in March.", None),
    ("Bank of England cuts interest rate to 5%",
     "It is the first reduction in borrowing costs since 2020.", "central bank rates"),
    ("Fed leaves benchmark rate unchanged, sees fewer cuts this year",
     "Policymakers said inflation remains elevated.", "central bank rates"),
    ("Mortgage lenders see record applications", "Demand rose as house prices steadied in the spring.", None),
    ("Scientists discover new species of deep sea fish",
     "The expedition explored trenches off the coast of Chile.", None),
]


@pytest.fixture(scope="module")
def matcher(embedder: Embedder) -> TopicMatcher:
    return TopicMatcher(TOPICS, embedder, default_threshold=THRESHOLD)


@pytest.fixture(scope="module")
def scored(matcher: TopicMatcher) -> list[list[TopicScore]]:
    texts = [article_text(title, lead) for title, lead, _ in CASES]
    return matcher.score_texts(texts)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0][:40] for c in CASES])
def test_default_threshold_matches_exactly_the_right_topic(case: int, scored: list[list[TopicScore]]) -> None:
    _, _, expected = CASES[case]
    matched = [s.topic for s in scored[case] if s.matched]
    assert matched == ([expected] if expected else []), {s.topic: round(s.score, 3) for s in scored[case]}


def test_scores_are_comparable_across_topics(scored: list[list[TopicScore]]) -> None:
    """Every on-topic article scores its own topic above every off-topic (article, topic) pair."""
    on = [s.score for (_, _, want), ss in zip(CASES, scored, strict=True) for s in ss if s.topic == want]
    off = [s.score for (_, _, want), ss in zip(CASES, scored, strict=True) for s in ss if s.topic != want]
    assert min(on) > max(off)


def test_counter_example_lowers_the_score_of_rocket_launches(matcher: TopicMatcher, embedder: Embedder) -> None:
    plain = TopicMatcher(
        [TOPICS[0].model_copy(update={"counter_examples": []})], embedder, default_threshold=THRESHOLD
    )
    text = "Rocket Lab launches communications satellite into orbit from New Zealand"
    with_counter = matcher.score_texts([text])[0][0]
    without = plain.score_texts([text])[0][0]
    assert with_counter.score < without.score
    assert with_counter.counter == "Rocket company launches communications satellites into orbit"
    assert "counter-example" in with_counter.explanation()


def test_explanation_names_the_closest_example(matcher: TopicMatcher) -> None:
    s = matcher.score_texts(["North Korea fires a ballistic missile into the sea off its east coast"])[0][0]
    assert s.matched
    assert "North Korea fires ballistic missile" in s.explanation()
    match = s.to_match(TOPICS[0])
    assert match.topic == "missile launches" and match.severity == "high"
    assert match.threshold == THRESHOLD and match.explanation == s.explanation()


GATES = [
    ("required keyword present", {"require_keywords": ["North Korea", "Iran"]}, True, ("North Korea",)),
    ("required keyword absent", {"require_keywords": ["Iran"]}, False, ()),
    ("excluded keyword present", {"exclude_keywords": ["drill"]}, False, ()),
    ("exclusion is whole-word", {"exclude_keywords": ["sea"]}, True, ()),
]


@pytest.mark.parametrize(("update", "matched", "hits"), [g[1:] for g in GATES], ids=[g[0] for g in GATES])
def test_keyword_gates(
    embedder: Embedder, update: dict[str, list[str]], matched: bool, hits: tuple[str, ...]
) -> None:
    topic = TOPICS[0].model_copy(update=update)
    m = TopicMatcher([topic], embedder, default_threshold=THRESHOLD)
    text = "North Korea fires ballistic missiles after DRILL near seaside town"
    s = m.score_texts([text])[0][0]
    assert s.matched is matched
    assert s.keywords == hits
    if not matched:
        assert s.gate and s.score < s.similarity - 0.5


def test_per_topic_threshold_overrides_the_default(embedder: Embedder) -> None:
    strict = TOPICS[1].model_copy(update={"threshold": 0.95})
    s = TopicMatcher([strict], embedder, default_threshold=THRESHOLD).score_texts(
        ["Strong earthquake hits Morocco, hundreds dead"]
    )[0][0]
    assert s.threshold == 0.95 and not s.matched


def test_topic_with_only_a_name(embedder: Embedder) -> None:
    m = TopicMatcher([WatchedTopic(name="wildfires")], embedder, default_threshold=THRESHOLD)
    fire, other = m.score_texts(
        ["Wildfire forces thousands to evacuate near Los Angeles", "Tennis star wins fifth Wimbledon title"]
    )
    assert fire[0].score > other[0].score + 0.2


def test_anchors_are_embedded_once(embedder: Embedder) -> None:
    calls: list[int] = []

    class Counting:
        def encode(self, texts: list[str]):  # type: ignore[no-untyped-def]
            calls.append(len(texts))
            return embedder.encode(texts)

    m = TopicMatcher(TOPICS, Counting(), default_threshold=THRESHOLD)
    assert len(calls) == 1
    m.score_texts(["a", "b"])
    assert calls[1:] == [2]


def _score(topic: str, score: float, gate: str | None = None) -> TopicScore:
    return TopicScore(topic=topic, score=score, threshold=THRESHOLD, similarity=score, closest="x", gate=gate)


def test_best_scores_prefers_ungated_then_higher() -> None:
    prev = {"a": _score("a", 0.3)}
    out = best_scores([_score("a", 0.9, gate="excluded"), _score("b", 0.2), _score("b", 0.5)], prev)
    assert out["a"].score == 0.3
    assert out["b"].score == 0.5


def test_default_settings_match_the_documented_defaults() -> None:
    cfg = TopicMatchSettings.model_validate({})
    assert (cfg.counter_margin, cfg.counter_weight, cfg.anchor_slack) == (0.05, 1.0, 0.15)


WORD = st.text(string.ascii_letters, min_size=1, max_size=8)


@given(word=WORD, before=st.sampled_from(["", " ", ". ", "(", "\n"]), after=st.sampled_from(["", " ", "!", "'s"]))
def test_keyword_found_on_word_boundaries_in_any_case(word: str, before: str, after: str) -> None:
    assert keyword_pattern(word).search(f"{before}{word.swapcase()}{after}")


@given(word=WORD, glue=st.sampled_from(["a", "Z", "9", "_"]))
def test_keyword_not_found_inside_a_longer_word(word: str, glue: str) -> None:
    assert not keyword_pattern(word).search(f"{glue}{word}{glue}")


def test_phrase_keywords_span_any_whitespace() -> None:
    assert keyword_pattern("North Korea").search("in north\n  KOREA today")
    assert keyword_pattern("U.S.").search("the U.S. said")
    assert not keyword_pattern("U.S.").search("the UxSx said")


BROAD = WatchedTopic(
    name="business and economy",
    description="Companies, markets, the economy, central banks, earnings and trade.",
    examples=["Shares fall as investors worry about interest rates", "Company reports higher quarterly profit"],
)


def test_broad_topics_get_an_allowance_and_still_match(embedder: Embedder) -> None:
    m = TopicMatcher([BROAD, TOPICS[0]], embedder, default_threshold=THRESHOLD)
    on, off = m.score_texts(
        ["Carmaker's profit beats forecasts as sales rise in China", "Actress files for divorce from rock star"]
    )
    broad, narrow = on
    assert broad.allowance > 0.05 and narrow.allowance == 0.0
    assert broad.matched and "broad topic" in broad.explanation()
    assert not off[0].matched
