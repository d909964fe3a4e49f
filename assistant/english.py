"""Everything English-specific the answerer knows, in one place.

Question words and the kind of answer they ask for, number words, month and day names, and the
few words that mark a list-introducing or referring sentence. Nothing here is tied to a topic or
a corpus: these are properties of English questions. Another language needs its own copy of this
module (and a stemmer and stopword list in `assistant.text`).
"""

from __future__ import annotations

import re

# Answer types a question can ask for (the answerer's answer-type features, in this order).
ANSWER_TYPES = ("person", "date", "place", "number", "duration", "reason", "speech", "entity", "other")

# (pattern on the lower-cased question, answer type): the first match wins.
QUESTION_TYPES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), kind) for pattern, kind in (
        (r"\bwhat (did|does|do|has|have|had|will|would) .+ (say|said|tell|told|write|call|describe|think|claim|"
         r"argue|announce|mean)\b|\bhow (did|does|do|has|have) .+ (describe|call|respond|react|reply|characteri[sz]e)\b",
         "speech"),
        (r"\bhow (long|many (years|months|weeks|days|hours|minutes))\b", "duration"),
        (r"\bhow (many|much)\b|\bwhat (number|percentage|percent|share|amount|proportion|fraction)\b", "number"),
        (r"\bhow (old|big|large|tall|high|far|fast|heavy|wide|deep)\b", "number"),
        (r"\bwhen\b|\bwhat (year|date|day|month|decade|century|time|period)\b|\bwhich (year|date|day|month|decade|century)\b"
         r"|\bin (what|which) (year|month|decade|century)\b", "date"),
        (r"\bwho(m|se)?\b|\bwhat (person|man|woman|company|group|organization|band|artist)\b"
         r"|\bwhich (person|man|woman|company|group|organization|band|artist)\b", "person"),
        (r"\bwhere\b|\bwhat (country|city|state|place|region|town|continent|location)\b"
         r"|\bwhich (country|city|state|place|region|town|continent|location)\b|\bin what (country|city|state)\b", "place"),
        (r"\bwhy\b|\bwhat (caused|causes|led|reason)\b|\bfor what reason\b", "reason"),
        (r"\bwhich\b|\bwhat\b|\bname\b", "entity"),
    )
)

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "twenty", "thirty", "forty", "fifty", "hundred", "hundreds", "thousand",
                "thousands", "million", "millions", "billion", "billions", "dozen", "dozens", "half",
                "first", "second", "third", "several")
TIME_UNITS = ("year", "years", "month", "months", "week", "weeks", "day", "days", "hour", "hours",
              "minute", "minutes", "second", "seconds", "decade", "decades", "century", "centuries")
# Reporting verbs (inflected forms): what someone "said" is answered by what they "described" or "warned".
REPORTING_VERBS = ("said", "says", "say", "told", "tells", "wrote", "writes", "called", "calls", "described",
                   "describes", "labelled", "labeled", "stated", "states", "responded", "replied", "added",
                   "insisted", "warned", "claimed", "claims", "argued", "argues", "announced", "declared",
                   "accused", "dismissed", "noted", "explained", "asserted", "denied", "urged", "branded",
                   "characterised", "characterized", "dubbed", "termed", "according")
REASON_WORDS = ("because", "due", "since", "so", "order", "caused", "cause", "result", "reason", "led", "thanks")

# Sentence-initial words that are capitalised only because they start a sentence or a clause.
FUNCTION_WORDS = frozenset(
    "a an the in on at of for to by with from as and or but if when while after before during this that these "
    "those it its he she they his her their we our you your i there here what which who whom whose where why "
    "how is are was were be been has have had do does did not no yes also however although though".split()
)


def question_type(question: str) -> str:
    """The kind of answer `question` asks for (one of ANSWER_TYPES)."""
    lower = question.lower()
    for pattern, kind in QUESTION_TYPES:
        if pattern.search(lower):
            return kind
    return "other"
