"""Build the GSM-IC-style distraction set that benchmarks/context.py reads.

    .venv/bin/python benchmarks/make_distraction_set.py [--gsm8k N] [--per-template K]
        [--variants V] [--check N]

1. Clean problems: short GSM8K train problems (at most 3 sentences, the last one the only
   question, a reference solution of one or two calculations) and word problems from the
   TEMPLATES below (names, numbers and wording drawn with a fixed seed, answers computed). The
   bundled model answers each exactly as `diagnostics.diagnose.diagnose` generates in its
   default mode: chat template, greedy, the default budget and stopping rule, judged by
   `diagnostics.answers.judge` in the same mode. Only the problems it answers right go on.
2. Each right problem gets `--variants` edited versions with ONE inserted irrelevant sentence
   holding a number (GSM-IC style: it cannot change the answer), never after the question
   sentence: `in_topic_number` (the problem's kind of thing, held by someone else, elsewhere or
   at another time), `off_topic_number` (an unrelated fact), `role_overlap` (a fact about the
   problem's person that the question does not use); `position` is `before_question` (right
   before the question sentence) or `middle` (between two of the other sentences).
3. The edited problems are generated and judged the same way; `flipped` marks right -> wrong.
   Flipped items are split tune/test half and half by source (so one clean problem's variants
   share a split); the other items follow their source's split.

Generation is batched (left-padded greedy rows, `LanguageModel.generate_rows`) in two passes:
every prompt with a budget of FIRST_PASS tokens, then the rows that had not stopped rerun with
the full budget (greedy decoding makes the first pass a prefix of the second, so the result is
the full-budget output). Outputs are cached in benchmarks/data/distraction_generations.jsonl
(the record of every screened problem), so a rerun only generates what is new. `--check N`
compares N items with `diagnose(...)`'s own generated output and with unbatched generation.
Writes benchmarks/data/distraction.jsonl and benchmarks/results/distraction_set.json (counts,
flip rates, CPU time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from diagnostics.answers import judge
from diagnostics.context import prompt_edits
from diagnostics.diagnose import diagnose, stop_rule
from diagnostics.language_model import LanguageModel
from diagnostics.model_loading import load_model
from diagnostics.options import DiagnosisOptions
from diagnostics.solution_steps import sentence_spans

HERE = Path(__file__).parent
GSM8K = Path("/work/shared/datasets/gsm8k/train.jsonl")
DATA = HERE / "data" / "distraction.jsonl"
CACHE = HERE / "data" / "distraction_generations.jsonl"
SUMMARY = HERE / "results" / "distraction_set.json"
OPTIONS = DiagnosisOptions()  # diagnose's default: chat template, gsm8k judging, 256 tokens
FIRST_PASS = 96
SEED = 14

NAMES = ["Emma", "Liam", "Olivia", "Noah", "Ava", "Ethan", "Mia", "Lucas", "Sofia", "Mason",
         "Chloe", "Leo", "Grace", "Omar", "Priya", "Diego", "Hana", "Kofi", "Nina", "Samuel",
         "Ines", "Tariq", "Yuki", "Ben"]  # fmt: skip


@dataclass(frozen=True)
class Template:
    """A word problem with numbers a, b (and c): its sentences ({P} is the person), the number
    draw (None: redraw), the answer, and its own in-topic distractor ({O}: another person)."""

    name: str
    sentences: tuple[str, ...]
    draw: object  # rng -> dict of numbers, or None to redraw
    answer: object  # numbers -> int
    in_topic: str


def _d(**ranges):
    return lambda rng: {k: rng.randint(*v) for k, v in ranges.items()}


def _div(q: tuple[int, int], d: tuple[int, int]):
    def draw(rng):
        b, k = rng.randint(*d), rng.randint(*q)
        return {"a": b * k, "b": b}

    return draw


def _sub(a, b, c=None):
    def draw(rng):
        n = {"a": rng.randint(*a), "b": rng.randint(*b)}
        if c:
            n["c"] = rng.randint(*c)
        return n if n["a"] - n["b"] - n.get("c", 0) > 0 else None

    return draw


TEMPLATES = [
    Template("apples", ("{P} has {a} apples.", "At the market, {P} buys {b} more apples.",
             "How many apples does {P} have now?"), _d(a=(3, 30), b=(2, 20)),
             lambda n: n["a"] + n["b"], "Last year, {O}, who lives in another town, picked {n} apples from one tree."),
    Template("marbles", ("{P} had {a} marbles.", "{P} gave {b} marbles to a friend.",
             "How many marbles does {P} have left?"), _sub((10, 50), (2, 20)),
             lambda n: n["a"] - n["b"], "{O}, a cousin in another city, owns {n} marbles."),
    Template("pencil_boxes", ("{P} has {a} boxes of pencils.", "Each box holds {b} pencils.",
             "How many pencils does {P} have in total?"), _d(a=(2, 9), b=(3, 12)),
             lambda n: n["a"] * n["b"], "A shop in the next town sells boxes of {n} pens."),
    Template("cookies", ("{P} baked {a} cookies.", "{P} shared them equally among {b} friends.",
             "How many cookies did each friend get?"), _div((2, 8), (2, 6)),
             lambda n: n["a"] // n["b"], "Last month, {O} baked {n} muffins for a school fair."),
    Template("wage", ("{P} earns ${a} per hour.", "On Saturday, {P} worked {b} hours.",
             "How many dollars did {P} earn on Saturday?"), _d(a=(5, 20), b=(2, 8)),
             lambda n: n["a"] * n["b"], "{O}, who works at a different store, earns ${n} per hour."),
    Template("bus", ("{P} drives a bus that had {a} passengers.",
             "At the next stop, {b} more passengers got on.",
             "How many passengers are on the bus now?"), _d(a=(5, 30), b=(2, 15)),
             lambda n: n["a"] + n["b"], "Another bus, on a route across town, carried {n} passengers that morning."),
    Template("pages", ("{P} read {a} pages on Monday.", "On Tuesday, {P} read {b} pages.",
             "How many pages did {P} read in the two days?"), _d(a=(5, 40), b=(5, 40)),
             lambda n: n["a"] + n["b"], "{O}, a classmate, read {n} pages of a comic last summer."),
    Template("stickers", ("{P} collected {a} stickers.", "On the way home, {P} lost {b} of them.",
             "How many stickers does {P} have now?"), _sub((10, 60), (2, 9)),
             lambda n: n["a"] - n["b"], "{O}, who lives in another town, has {n} stickers in an album."),
    Template("eggs", ("{P} packs eggs into cartons.", "Each carton holds {b} eggs, and {P} fills {a} cartons.",
             "How many eggs did {P} pack?"), _d(a=(2, 9), b=(6, 12)),
             lambda n: n["a"] * n["b"], "A farm in the next valley has {n} chickens."),
    Template("savings", ("{P} saves ${a} every week.", "{P} has been saving for {b} weeks.",
             "How many dollars has {P} saved?"), _d(a=(2, 15), b=(2, 10)),
             lambda n: n["a"] * n["b"], "{O}, an old school friend, saved ${n} last year."),
    Template("candy_bags", ("{P} has {a} candies.", "{P} puts them into bags of {b} candies each.",
             "How many bags does {P} fill?"), _div((2, 9), (2, 6)),
             lambda n: n["a"] // n["b"], "A candy store downtown sells {n} kinds of lollipops."),
    Template("tomatoes", ("{P} planted {a} rows of tomatoes.", "There are {b} plants in each row.",
             "How many tomato plants did {P} plant?"), _d(a=(2, 9), b=(3, 10)),
             lambda n: n["a"] * n["b"], "{O}, a neighbor two streets away, grows {n} pumpkins."),
    Template("shelf_books", ("{P} had {a} books on a shelf.", "{P} gave away {b} of the books.",
             "How many books are left on the shelf?"), _sub((10, 40), (2, 9)),
             lambda n: n["a"] - n["b"], "{O}, an aunt in another city, owns {n} cookbooks."),
    Template("shirts", ("A shirt costs ${a}.", "{P} buys {b} shirts.",
             "How many dollars does {P} spend?"), _d(a=(5, 20), b=(2, 6)),
             lambda n: n["a"] * n["b"], "Last winter, {O} paid ${n} for a coat."),
    Template("change", ("{P} bought a lunch that cost ${b}.", "{P} paid with a ${a} bill.",
             "How many dollars of change did {P} get?"), lambda rng: {"b": rng.randint(3, 18), "a": rng.choice([20, 50])},
             lambda n: n["a"] - n["b"], "{O}, who was at another cafe, paid ${n} for breakfast."),
    Template("gum", ("{P} bought {a} packs of gum.", "Each pack has {b} pieces, and {P} chewed {c} pieces.",
             "How many pieces of gum are left?"), lambda rng: (lambda a, b: {"a": a, "b": b, "c": rng.randint(1, a * b - 1)})(rng.randint(2, 6), rng.randint(5, 10)),
             lambda n: n["a"] * n["b"] - n["c"], "A store in the next town sells {n} flavors of gum."),
    Template("fish_tank", ("{P} has {a} fish in a tank.", "{P} adds {b} more fish and then gives away {c} fish.",
             "How many fish are in the tank now?"), _d(a=(5, 20), b=(2, 10), c=(1, 5)),
             lambda n: n["a"] + n["b"] - n["c"], "{O}, a friend in another city, keeps {n} fish in a pond."),
    Template("running", ("{P} runs {a} miles every day.", "{P} keeps this up for {b} days.",
             "How many miles does {P} run in total?"), _d(a=(2, 9), b=(3, 10)),
             lambda n: n["a"] * n["b"], "{O}, a runner in another country, ran {n} miles last month."),
    Template("sister_age", ("{P} is {a} years old.", "{P}'s sister is {b} years older than {P}.",
             "How old is {P}'s sister?"), _d(a=(5, 30), b=(2, 10)),
             lambda n: n["a"] + n["b"], "{O}, who lives across the street, is {n} years old."),
    Template("pizza", ("{P} ordered {a} pizzas for a party.", "Each pizza was cut into {b} slices.",
             "How many slices did {P} order in total?"), _d(a=(2, 8), b=(4, 12)),
             lambda n: n["a"] * n["b"], "Last week, {O} ordered {n} sandwiches from a different shop."),
    Template("crayons", ("{P} has {a} red crayons and {b} blue crayons.", "{P} keeps all of them in a tin box.",
             "How many crayons does {P} have?"), _d(a=(3, 30), b=(3, 30)),
             lambda n: n["a"] + n["b"], "{O}, a classmate in another school, has {n} markers."),
    Template("chairs", ("{P} set up {a} rows of chairs in a hall.", "Each row has {b} chairs.",
             "How many chairs did {P} set up?"), _d(a=(3, 10), b=(4, 12)),
             lambda n: n["a"] * n["b"], "A theater across town has {n} seats in its balcony."),
    Template("water", ("{P} drinks {a} glasses of water each day.", "A week has 7 days.",
             "How many glasses of water does {P} drink in a week?"), _d(a=(2, 9)),
             lambda n: n["a"] * 7, "{O}, who lives in another city, drinks {n} cups of tea a week."),
    Template("toy_train", ("{P}'s toy train has {a} cars.", "{P} adds {b} new cars to it.",
             "How many cars does the toy train have now?"), _d(a=(3, 20), b=(2, 10)),
             lambda n: n["a"] + n["b"], "{O}, a cousin in another town, has a toy boat with {n} sails."),
    Template("ribbon", ("{P} has a ribbon that is {a} meters long.", "{P} cuts off {b} meters of it.",
             "How many meters of ribbon are left?"), _sub((8, 40), (2, 7)),
             lambda n: n["a"] - n["b"], "A craft shop in the next town sells rolls of {n} meters of string."),
    Template("balloons", ("{P} blew up {a} balloons for a party.", "Later, {b} of the balloons popped.",
             "How many balloons does {P} still have?"), _sub((8, 40), (2, 7)),
             lambda n: n["a"] - n["b"], "At a different party last year, {O} blew up {n} balloons."),
    Template("cupcakes", ("{P} made {a} cupcakes for a bake sale.",
             "{P} sold {b} cupcakes in the morning and {c} in the afternoon.",
             "How many cupcakes did {P} not sell?"), _sub((20, 50), (3, 12), (3, 12)),
             lambda n: n["a"] - n["b"] - n["c"], "At another bake sale across town, {O} sold {n} pies."),
    Template("tickets", ("Each movie ticket costs ${a}.", "{P} buys tickets for {b} people.",
             "How many dollars does {P} pay for the tickets?"), _d(a=(5, 15), b=(2, 6)),
             lambda n: n["a"] * n["b"], "{O}, who went to a concert last year, paid ${n} for a seat."),
    Template("laps", ("{P} swam {a} laps on Monday.", "On Wednesday, {P} swam {b} laps.",
             "How many laps did {P} swim altogether?"), _d(a=(4, 30), b=(4, 30)),
             lambda n: n["a"] + n["b"], "{O}, who trains at another pool, swims {n} laps every morning."),
    Template("groups", ("{P} teaches a class of {a} students.", "{P} splits the class into groups of {b}.",
             "How many groups are there?"), _div((2, 8), (2, 6)),
             lambda n: n["a"] // n["b"], "A school in the next town has {n} teachers."),
    Template("stamps", ("{P} had {a} stamps.", "After a trip, {P} had twice as many stamps as before.",
             "How many stamps does {P} have now?"), _d(a=(5, 40)),
             lambda n: 2 * n["a"], "{O}, a collector in another country, has {n} coins."),
    Template("piano", ("{P} practiced piano for {a} minutes on Saturday.",
             "On Sunday, {P} practiced {b} minutes longer than on Saturday.",
             "How many minutes did {P} practice on Sunday?"), _d(a=(10, 40), b=(5, 20)),
             lambda n: n["a"] + n["b"], "{O}, who plays in a band across town, practices guitar {n} minutes a day."),
    Template("vases", ("{P} picked {a} flowers from the garden.", "{P} put {b} flowers in each vase.",
             "How many vases did {P} fill?"), _div((2, 8), (3, 6)),
             lambda n: n["a"] // n["b"], "A flower shop in the next town sold {n} roses last week."),
    Template("shells", ("{P} found {a} shells at the beach.", "{P}'s brother found {b} shells.",
             "How many shells did {P} and the brother find together?"), _d(a=(3, 30), b=(3, 30)),
             lambda n: n["a"] + n["b"], "Another family, on a beach far away, found {n} starfish."),
    Template("muffins", ("{P} bakes {a} trays of muffins.", "Each tray holds {b} muffins, and {P} eats {c} of them.",
             "How many muffins are left?"), lambda rng: (lambda a, b: {"a": a, "b": b, "c": rng.randint(1, 4)})(rng.randint(2, 5), rng.randint(6, 12)),
             lambda n: n["a"] * n["b"] - n["c"], "{O}, a baker in another city, sells {n} loaves of bread a day."),
    Template("trees", ("A park has {a} trees.", "The gardeners, led by {P}, plant {b} more trees.",
             "How many trees does the park have now?"), _d(a=(10, 50), b=(2, 15)),
             lambda n: n["a"] + n["b"], "Another park, across the river, has {n} benches."),
]  # fmt: skip

# role_overlap: a fact about the problem's person the question does not use; off-topic: an
# unrelated fact. (text, words that rule it out when the problem already has them, the range
# of a plausible number or None for the problem's range)
ROLE_FACTS = [
    ("{P}'s favorite number is {n}.", ("favorite", "number"), None),
    ("{P}'s neighbor is {n} years old.", ("year", "old", "age"), (20, 80)),
    ("{P} has a cousin who lives {n} miles away.", ("mile", "cousin"), None),
    ("{P}'s apartment is on floor {n} of the building.", ("floor", "apartment"), (2, 30)),
    ("{P} has {n} photos saved on a phone.", ("photo", "phone"), None),
    ("{P}'s best friend has {n} goldfish.", ("fish",), (2, 12)),
    ("{P} once waited {n} minutes for a train.", ("minute", "train"), (5, 45)),
    ("{P}'s bike has {n} gears.", ("bike", "gear"), (3, 21)),
    ("{P} wears shoes of size {n}.", ("shoe", "size"), (4, 13)),
]
OFF_TOPIC = [
    ("The town library has {n} chairs in its reading room.", ("library", "chair"), None),
    ("The temperature outside was {n} degrees that morning.", ("degree", "temperature"), (40, 95)),
    ("A park nearby has {n} oak trees.", ("tree", "park"), None),
    ("The school bus on the next street has {n} seats.", ("bus", "seat"), (20, 60)),
    ("The museum downtown opened {n} years ago.", ("museum", "year"), None),
    ("There are {n} houses on the next street.", ("house", "street"), None),
    ("A train left the station {n} minutes late.", ("train", "minute"), (3, 40)),
    ("The mountain to the north is {n} hundred meters tall.", ("meter", "mountain"), (3, 40)),
    ("A pond in the forest is home to {n} ducks.", ("duck", "pond"), None),
]
_PRONOUN = re.compile(r"\b(she|he|her|his|him|they|them|their|it|its)\b", re.I)
TIME_NOUNS = {"hours", "minutes", "days", "weeks", "months", "years", "seconds"}
NOT_NOUNS = {"more", "times", "less", "fewer", "of", "does", "do", "did", "are", "is", "in",
             "total", "people", "each", "will", "can", "would", "were", "was", "has", "had"}  # fmt: skip
NOT_NAMES = {"A", "An", "The", "If", "There", "In", "On", "Each", "Every", "It", "This", "At",
             "For", "When", "Mr", "Mrs", "Ms", "Dr", "One", "Two", "Three", "After", "Last",
             "Some", "Her", "His", "She", "He", "They", "Four", "Five", "John's"}  # fmt: skip


@dataclass
class Clean:
    """A clean problem: where it comes from, its text, its answer, and what distractors use."""

    source: str
    question: str
    expected: str
    answer: str | None
    person: str | None
    in_topic: str | None  # a distractor template with {O} and {n}
    numbers: list[float] = field(default_factory=list)


def gsm8k_problems(limit: int) -> list[Clean]:
    """Short GSM8K train problems: <= 3 sentences, the last the only question, <= 2 steps."""
    out = []
    for i, line in enumerate(GSM8K.read_text().splitlines()):
        row = json.loads(line)
        q, a = row["question"].strip(), row["answer"]
        spans = sentence_spans(q)
        if not (2 <= len(spans) <= 3) or q.count("?") != 1 or not q.endswith("?"):
            continue
        if a.count("<<") > 2 or len(q) > 240 or "\n" in q or re.search(r"\b(Mr|Mrs|Ms|Dr)\.", q):
            continue
        expected = a.split("####")[-1].strip().replace(",", "")
        if not re.fullmatch(r"-?\d+", expected):
            continue
        out.append(Clean(f"gsm8k-train-{i}", q, expected, a, _person(q), _gsm8k_in_topic(q),
                         _numbers(q)))  # fmt: skip
        if len(out) >= limit:
            break
    return out


def _person(q: str) -> str | None:
    m = re.match(r"([A-Z][a-z]+)(?:'s)?\b", q)
    if not m or m.group(1) in NOT_NAMES or q[m.end(1) : m.end(1) + 1] == ".":
        return None
    return m.group(1)


def _gsm8k_in_topic(q: str) -> str | None:
    """The question's kind of thing, held by someone else somewhere else."""
    question = q[sentence_spans(q)[-1][0] :]
    if re.search(r"\bhow much\b", question, re.I) and "$" in q:
        return "Last year, {O}, who lives in another town, had ${n} in a savings jar."
    m = re.search(r"\bhow many ([a-z]+)", question, re.I)
    if not m or m.group(1).lower() in NOT_NOUNS or not m.group(1).endswith("s"):
        return None
    noun = m.group(1).lower()
    if noun in TIME_NOUNS:
        return f"Last year, {{O}}, who lives in another town, once spent {{n}} {noun} at a fair."
    return f"Last year, {{O}}, who lives in another town, had {{n}} {noun}."


def _numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


def template_problems(per_template: int) -> list[Clean]:
    """per_template draws of each template, in blocks of 3 with a seed each (more draws keep
    the earlier ones); repeated texts dropped."""
    out, seen = [], set()
    for block in range(0, per_template, 3):
        rng = random.Random(SEED + block)
        for t in TEMPLATES:
            for k in range(block, min(block + 3, per_template)):
                c = _draw(t, k, rng)
                if c.question not in seen:
                    seen.add(c.question)
                    out.append(c)
    return out


def _draw(t: Template, k: int, rng: random.Random) -> Clean:
    n = None
    while n is None:
        n = t.draw(rng)
    person = rng.choice(NAMES)
    text = " ".join(s.format(P=person, **n) for s in t.sentences)
    return Clean(f"template-{t.name}-{k}", text, str(t.answer(n)), None, person, t.in_topic,
                 _numbers(text))  # fmt: skip


def variants(c: Clean, how_many: int, rng: random.Random) -> list[dict]:
    """Edited versions of `c` with one inserted irrelevant sentence each."""
    spans = sentence_spans(c.question)
    words = c.question.lower()
    others = [n for n in NAMES if n not in c.question]
    kinds = ["in_topic_number", "off_topic_number", "role_overlap"]
    rng.shuffle(kinds)
    kinds = (kinds * 2)[:how_many]
    # insertion points: the start of the question sentence (before_question), or of a
    # non-question sentence after the first (middle)
    out, used, toggle = [], set(), rng.random() < 0.5
    for kind in kinds:
        picked = _distractor(kind, c, words, rng, used)
        if picked is None:
            continue
        text, numbers = picked
        used.add(text.split("{")[0])
        value = _fresh_number(c, rng, numbers)
        sentence = text.format(P=c.person, O=rng.choice(others), n=value)

        # a sentence that brings in someone or something else never stands right before a
        # pronoun it could take over (it would change what the problem says)
        def fits(a: int, b: int, kind=kind) -> bool:
            if kind == "role_overlap":  # after the person is named
                return c.question.find(c.person) < a
            return not _PRONOUN.search(c.question[a:b])

        mids = [a for a, b in spans[1:-1] if fits(a, b)]
        choices = (["before_question"] if fits(*spans[-1]) else []) + (["middle"] if mids else [])
        if not choices:
            continue
        toggle = not toggle
        position = choices[-1] if toggle else choices[0]
        at = rng.choice(mids) if position == "middle" else spans[-1][0]
        edited = c.question[:at] + sentence + " " + c.question[at:]
        span = [at, at + len(sentence)]
        assert edited[span[0] : span[1]] == sentence
        if not any(e.kind == "sentence" and [e.start, e.end] == span for e in prompt_edits(edited)):
            continue  # the inserted sentence must be one of the question's own sentences
        out.append({"question": edited, "inserted_sentence": sentence, "inserted_span": span,
                    "insertion_kind": kind, "position": position})  # fmt: skip
    return out


def _distractor(kind, c: Clean, words: str, rng, used) -> tuple[str, tuple | None] | None:
    """A distractor template of `kind` that fits `c` (none already used), with its range."""
    if kind == "in_topic_number":
        fits = c.in_topic and c.in_topic.split("{")[0] not in used
        return (c.in_topic, None) if fits else None
    pool = ROLE_FACTS if kind == "role_overlap" else OFF_TOPIC
    if kind == "role_overlap" and not c.person:
        return None
    fits = [(t, r) for t, bad, r in pool
            if not any(b in words for b in bad) and t.split("{")[0] not in used]  # fmt: skip
    return rng.choice(fits) if fits else None


def _fresh_number(c: Clean, rng: random.Random, numbers: tuple[int, int] | None) -> int:
    """A number in `numbers` (default: the problem's range) that is neither one of the
    problem's numbers nor its answer."""
    lo, hi = numbers or (2, int(min(100, max(12, 2 * max(c.numbers, default=10)))))
    taken = set(c.numbers) | {float(c.expected)}
    while True:
        v = rng.randint(lo, hi)
        if float(v) not in taken:
            return v


class Generator:
    """diagnose's greedy generation (default options), batched, cached by prompt text."""

    def __init__(self, lm: LanguageModel, cache: Path, batch_size: int, generate: bool) -> None:
        self.lm, self.cache, self.batch_size, self.generate = lm, cache, batch_size, generate
        self.outputs: dict[str, tuple[str, bool]] = {}  # prompt -> (output, complete)
        cache.parent.mkdir(parents=True, exist_ok=True)
        if cache.exists():
            for line in cache.read_text().splitlines():
                row = json.loads(line)
                self.outputs[row["prompt"]] = (row["output"], row.get("complete", True))

    def __call__(self, prompts: list[str], label: str, *, full: bool = True) -> list[str | None]:
        """The outputs of `prompts`; with `full` False, None for a row that has not stopped
        within FIRST_PASS tokens (it is not rerun); None for what is not cached when not
        generating."""
        if not self.generate:
            cached = [self.outputs.get(p, ("", False)) for p in prompts]
            return [out if complete else None for out, complete in cached]
        todo = sorted({p for p in prompts if p not in self.outputs or (full and not self.outputs[p][1])},
                      key=lambda p: len(self.lm.prompt_ids(p, chat=OPTIONS.chat)))  # fmt: skip
        unfinished = [p for p in todo if p in self.outputs]  # first pass already done
        first = [p for p in todo if p not in self.outputs]
        bar = tqdm(total=len(first), desc=f"{label} (first pass)")
        for s in range(0, len(first), self.batch_size):
            chunk = first[s : s + self.batch_size]
            rows = self._rows(chunk, FIRST_PASS)
            for p, ids in zip(chunk, rows, strict=True):
                stopped = self._stopped(ids, FIRST_PASS)
                self._store(p, ids, stopped)
                if not stopped and full:
                    unfinished.append(p)
            bar.update(len(chunk))
        bar.close()
        for s in tqdm(range(0, len(unfinished), self.batch_size), desc=f"{label} (full budget)"):
            chunk = unfinished[s : s + self.batch_size]
            for p, ids in zip(chunk, self._rows(chunk, OPTIONS.max_new_tokens), strict=True):
                self._store(p, ids, True)
        return [self.outputs[p][0] if self.outputs[p][1] else None for p in prompts]

    def _rows(self, prompts: list[str], budget: int) -> list[torch.Tensor]:
        ids = [self.lm.prompt_ids(p, chat=OPTIONS.chat) for p in prompts]
        return self.lm.generate_rows(ids, max_new_tokens=budget, stop=stop_rule(OPTIONS)).ids

    def _stopped(self, ids: torch.Tensor, budget: int) -> bool:
        """Did the row stop by itself (EOS or the stopping rule), not by the budget?"""
        if len(ids) < budget:
            return True
        eos = self.lm.tokenizer.eos_token_id
        return int(ids[-1]) == eos or stop_rule(OPTIONS)(self._text(ids))

    def _text(self, ids: torch.Tensor) -> str:
        return self.lm.tokenizer.decode(ids, skip_special_tokens=True)

    def _store(self, prompt: str, ids: torch.Tensor, complete: bool) -> None:
        self.outputs[prompt] = (self._text(ids), complete)
        row = {"prompt": prompt, "output": self._text(ids), "complete": complete}
        with self.cache.open("a") as f:
            f.write(json.dumps(row) + "\n")


def _judged(output: str, expected: str):
    return judge(output, expected, OPTIONS.answer_mode, tolerance=OPTIONS.tolerance)


def split_of(sources: list[str], flipped_sources: set[str]) -> dict[str, str]:
    """Half the flipped items' sources tune, half test (ordered by a hash); others by hash."""
    key = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    ordered = sorted(flipped_sources, key=key)
    split = {s: ("tune" if k < (len(ordered) + 1) // 2 else "test") for k, s in enumerate(ordered)}
    for s in sources:
        split.setdefault(s, "tune" if int(key(s), 16) % 2 == 0 else "test")
    return split


def check(lm: LanguageModel, items: list[dict], n: int) -> list[dict]:
    """Our outputs vs unbatched generation on n items (flipped and not, alternating) and vs
    diagnose()'s own generated output on the first two."""
    from diagnostics.sae import load_sae

    sae, rows = load_sae("default"), []
    opts = OPTIONS.model_copy(update={"verify": False, "context": False})
    flipped = [i for i in items if i["flipped"]]
    kept = [i for i in items if not i["flipped"]]
    chosen = [x for pair in zip(flipped, kept, strict=False) for x in pair][:n]
    for k, item in enumerate(chosen):
        prompt = lm.prompt_ids(item["question"], chat=OPTIONS.chat)
        single = lm.generate_ids(
            prompt, max_new_tokens=OPTIONS.max_new_tokens, stop=stop_rule(OPTIONS)
        )
        row = {
            "id": item["id"],
            "flipped": item["flipped"],
            "unbatched_equal": lm.tokenizer.decode(single, skip_special_tokens=True)
            == item["output"],
        }
        if k < 2:
            report = diagnose(lm, sae, item["question"], item["expected"], options=opts)
            row["diagnose_equal"] = report.model_path.text == item["output"]
            row["diagnose_correct"] = report.correct
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gsm8k", type=int, default=80, help="short GSM8K problems to screen")
    parser.add_argument("--per-template", type=int, default=3, help="draws per template")
    parser.add_argument("--variants", type=int, default=3, help="edited versions per problem")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--check", type=int, default=0, help="items compared with diagnose()")
    parser.add_argument(
        "--no-generate",
        action="store_true",
        help="generate nothing: edited problems without a cached full output are left out",
    )
    parser.add_argument(
        "--screened-only",
        action="store_true",
        help="keep only the clean problems already screened in the cache (a screen cut short)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.process_time()
    lm = load_model("bundled") if not args.no_generate or args.check else None
    gen = Generator(lm, CACHE, args.batch_size, not args.no_generate)
    clean = gsm8k_problems(args.gsm8k) + template_problems(args.per_template)
    drawn = len(clean)
    if args.screened_only:
        clean = [c for c in clean if c.question in gen.outputs]
    clean_out = gen([c.question for c in clean], "clean", full=False)
    right = [(c, o) for c, o in zip(clean, clean_out, strict=True)
             if o is not None and _judged(o, c.expected).correct]  # fmt: skip
    rng = random.Random(SEED)
    edits = [(c, o, v) for c, o in right for v in variants(c, args.variants, rng)]
    edit_out = gen([v["question"] for _, _, v in edits], "edited")
    missing = sum(out is None for out in edit_out)
    kept = [k for k, out in enumerate(edit_out) if out is not None]
    edits, edit_out = [edits[k] for k in kept], [edit_out[k] for k in kept]
    items = []
    for k, ((c, o, v), out) in enumerate(zip(edits, edit_out, strict=True)):
        j = _judged(out, c.expected)
        items.append({"id": f"distraction-{k:04d}", "source": c.source,
                      "question_clean": c.question, **v, "answer": c.answer,
                      "expected": c.expected, "clean_output": o, "output": out,
                      "extracted": j.extracted, "correct": j.correct, "flipped": not j.correct})  # fmt: skip
    split = split_of([i["source"] for i in items], {i["source"] for i in items if i["flipped"]})
    for i in items:
        i["split"] = split[i["source"]]
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text("".join(json.dumps(i) + "\n" for i in items))
    summary = _summary(clean, right, items)
    summary["clean_not_stopped_in_first_pass"] = sum(o is None for o in clean_out)
    summary["drawn_not_screened"] = drawn - len(clean)
    summary["edited_not_generated"] = missing
    if args.check:
        summary["check"] = check(lm, items, args.check)
    summary["cpu_seconds"] = time.process_time() - t0
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "check"}, indent=2))


def _summary(clean: list[Clean], right, items: list[dict]) -> dict:
    def origin(s: str) -> str:
        return "gsm8k" if s.startswith("gsm8k") else "template"

    def rate(rows):
        return {"items": len(rows), "flipped": sum(r["flipped"] for r in rows),
                "flip_rate": round(sum(r["flipped"] for r in rows) / len(rows), 3) if rows else None}  # fmt: skip

    flips = [i for i in items if i["flipped"]]
    return {
        "screened": dict(Counter(origin(c.source) for c in clean)),
        "right": dict(Counter(origin(c.source) for c, _ in right)),
        "templates": len(TEMPLATES),
        "edited": rate(items),
        "by_origin": {o: rate([i for i in items if origin(i["source"]) == o]) for o in ("gsm8k", "template")},
        "by_kind": {k: rate([i for i in items if i["insertion_kind"] == k]) for k in sorted({i["insertion_kind"] for i in items})},
        "by_position": {p: rate([i for i in items if i["position"] == p]) for p in sorted({i["position"] for i in items})},
        "flipped_sources": len({i["source"] for i in flips}),
        "flipped_by_split": dict(Counter(i["split"] for i in flips)),
        "flipped_sources_by_split": {s: len({i["source"] for i in flips if i["split"] == s}) for s in ("tune", "test")},
    }  # fmt: skip


if __name__ == "__main__":
    main()
