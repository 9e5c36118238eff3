"""Keywords, the "unknown" vocabulary and the label order (pure checks, no synthesis).

Labels are `keywords..., "silence", "unknown"`. Keywords are words or short phrases
("lights on", "hey kettle"), compared after lower-casing and collapsing whitespace. The
"unknown" class is spoken words from a vocabulary that never equals a keyword, in spelling or
in sound (`check_homophones`). By default it is `UNKNOWN_WORDS` (Speech Commands' non-keyword
words plus common English nouns) without the user's keywords and the words that sound like one
(`sound_alikes`): the user chose the keywords, not the filler list. A list the user passes as
`unknown_words` is taken as it is, and a keyword in it is refused.
"""

import re

DEFAULT_KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE = "silence"
UNKNOWN = "unknown"

# Speech Commands' auxiliary words (the first 25), then common concrete English words chosen to
# be neither the default keywords nor their homophones.
UNKNOWN_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four",
    "happy", "house", "learn", "marvin", "nine", "one", "seven", "sheila", "six", "three",
    "tree", "two", "visual", "wow", "zero",
    "apple", "banana", "bottle", "button", "camera", "candle", "carpet", "chair", "cheese",
    "city", "cloud", "coffee", "cookie", "corner", "cotton", "dinner", "doctor", "dollar",
    "door", "dragon", "engine", "evening", "family", "farmer", "finger", "flower", "forest",
    "garden", "guitar", "hammer", "harbor", "helmet", "island", "jacket", "jungle", "kitchen",
    "ladder", "lemon", "letter", "lion", "market", "metal", "mirror", "monkey", "morning",
    "mountain", "music", "number", "ocean", "orange", "paper", "pencil", "people", "pepper",
    "pillow", "planet", "pocket", "puzzle", "rabbit", "river", "rocket", "salad", "sugar",
    "summer", "sunday", "teacher", "ticket", "tiger", "tomato", "tunnel", "turtle", "valley",
    "velvet", "village", "wagon", "water", "winter", "yellow", "zebra",
)

_TEXT = re.compile(r"[a-z0-9']+(?: [a-z0-9']+)*")
MAX_WORDS = 4


def normalize_text(text, what="keyword"):
    """Returns `text` lower-cased with whitespace collapsed, after checking it can be spoken.

    Raises:
        TypeError: if `text` is not a string.
        ValueError: if it is empty, has characters other than letters, digits, apostrophes,
            hyphens and spaces, or more than `MAX_WORDS` words.
    """
    if not isinstance(text, str):
        raise TypeError(f"Expected each {what} to be a string. Received: {text!r}")
    normal = " ".join(text.lower().replace("-", " ").split())
    if not _TEXT.fullmatch(normal):
        raise ValueError(
            f"Expected each {what} to be a word or short phrase of letters, digits, "
            f"apostrophes, hyphens and spaces. Received: {text!r}"
        )
    if len(normal.split()) > MAX_WORDS:
        raise ValueError(
            f"Expected each {what} to have at most {MAX_WORDS} words (it must fit in a 1 s "
            f"clip). Received: {text!r}"
        )
    return normal


def as_list(name, values):
    """Returns `values` as a list, refusing a bare string (a common slip for one entry)."""
    if isinstance(values, str):
        raise TypeError(
            f"Expected `{name}` to be a list of strings. Received the string {values!r}; "
            f"pass [{values!r}] for a single entry."
        )
    try:
        return list(values)
    except TypeError:
        raise TypeError(
            f"Expected `{name}` to be a list of strings. Received: {name}={values!r}"
        ) from None


def _check_unique(name, originals, normals):
    seen = {}
    for original, normal in zip(originals, normals):
        if normal in seen:
            raise ValueError(
                f"Repeated entries in `{name}`: {seen[normal]!r} and {original!r} are the same "
                "after lower-casing and collapsing whitespace. Remove one of them."
            )
        seen[normal] = original


def check_keywords(keywords):
    """Validates the keyword list and returns it normalized (`None` -> `DEFAULT_KEYWORDS`).

    Args:
        keywords: a list of words or short phrases, or `None` for Speech Commands' ten.

    Returns:
        A tuple of normalized keywords, in the order given.

    Raises:
        TypeError: if `keywords` is a bare string or not a list of strings.
        ValueError: if it is empty, has repeated entries (case- and whitespace-insensitive),
            uses a reserved label ("silence", "unknown") or an unspeakable entry.
    """
    if keywords is None:
        return DEFAULT_KEYWORDS
    originals = as_list("keywords", keywords)
    if not originals:
        raise ValueError(
            "Expected at least one keyword. Received: keywords=[]. Pass e.g. "
            "keywords=['lights on', 'lights off'], or None for Speech Commands' ten."
        )
    normals = [normalize_text(k) for k in originals]
    _check_unique("keywords", originals, normals)
    reserved = [k for k in normals if k in (SILENCE, UNKNOWN)]
    if reserved:
        raise ValueError(
            f"Keyword {reserved[0]!r} is a reserved label name: the labels are keywords..., "
            f"{SILENCE!r}, {UNKNOWN!r}. Choose another keyword."
        )
    return tuple(normals)


def check_unknown_words(unknown_words, keywords):
    """Validates the "unknown" vocabulary against the keywords.

    Args:
        unknown_words: a list of words or phrases for the "unknown" class, or `None` for
            `UNKNOWN_WORDS` without the keywords (`default_unknown_words(exclude=keywords)`).
        keywords: the normalized keywords (from `check_keywords`).

    Returns:
        A tuple of normalized unknown words.

    Raises:
        TypeError: if `unknown_words` is not a list of strings.
        ValueError: if it is empty or repeats an entry, or a keyword is also in the
            `unknown_words` passed (the message names it and how to drop it).
    """
    if unknown_words is None:
        return default_unknown_words(exclude=keywords)
    originals = as_list("unknown_words", unknown_words)
    if not originals:
        raise ValueError("Expected at least one unknown word. Received: unknown_words=[].")
    normals = [normalize_text(w, "unknown word") for w in originals]
    _check_unique("unknown_words", originals, normals)
    clashes = [k for k in keywords if k in set(normals)]
    if clashes:
        raise ValueError(
            f"Keyword(s) {clashes} also in `unknown_words` of the 'unknown' class: a clip of the "
            "word would carry two labels. Remove them from `unknown_words` (or pass None for "
            "the default vocabulary without your keywords), or choose other keywords."
        )
    return tuple(normals)


def default_unknown_words(exclude=()):
    """Returns `UNKNOWN_WORDS` without the words in `exclude` (compared normalized).

    Example:

    >>> "one" in default_unknown_words(exclude=["One", "two"])
    False
    """
    drop = {normalize_text(w) for w in as_list("exclude", exclude)}
    return tuple(w for w in UNKNOWN_WORDS if w not in drop)


def sound_alikes(keywords, unknown_words, keyword_phonemes, unknown_phonemes):
    """The unknown words that sound like a keyword (same phonemes), in order (pure function).

    Example:

    >>> sound_alikes(("to",), ("two", "cat"), ("tu:",), ("tu:", "kat"))
    ['two']
    """
    sounds = set(keyword_phonemes)
    return [w for w, sound in zip(unknown_words, unknown_phonemes) if sound in sounds]


def check_homophones(keywords, unknown_words, keyword_phonemes, unknown_phonemes):
    """Refuses keywords that sound like another keyword or an unknown word (pure function).

    Args:
        keywords, unknown_words: normalized texts.
        keyword_phonemes, unknown_phonemes: their phoneme strings (`espeak.phonemes`).

    Raises:
        ValueError: naming the two texts and their shared pronunciation.
    """
    seen = {}
    for text, sound in zip(keywords, keyword_phonemes):
        if sound in seen:
            raise ValueError(
                f"Keywords {seen[sound]!r} and {text!r} sound the same to espeak-ng "
                f"(/{sound}/): a model could not tell them apart. Keep one of them."
            )
        seen[sound] = text
    for text, sound in zip(unknown_words, unknown_phonemes):
        if sound in seen:
            raise ValueError(
                f"Keyword {seen[sound]!r} sounds the same as the unknown word {text!r} "
                f"(/{sound}/). Pass unknown_words=tfdynhp.datasets.kws.default_unknown_words("
                f"exclude=[{text!r}]), or choose another keyword."
            )


def labels(keywords):
    """Returns the label names in class order: `keywords..., "silence", "unknown"`."""
    return (*keywords, SILENCE, UNKNOWN)
