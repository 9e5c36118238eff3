"""Tests for tfdynhp.datasets.kws: the synthetic keyword-spotting data set.

The pure parts (vocabulary, splits, augmentations, front end, cache files) are checked by hand;
the rest synthesizes real espeak-ng speech (skipped with the install command when espeak-ng is
absent): bad inputs stop before any synthesis, generation is deterministic and resumes after an
interruption, splits are speaker-disjoint, and a plain CNN learns the easy set.
"""

import importlib.util
import json
import os
import shutil

import numpy as np
import pytest

import tfdynhp
from tfdynhp.datasets import kws
from tfdynhp.datasets.kws import augment, cache, dataset, espeak, plan, splits, vocabulary
from tfdynhp.datasets.kws.features import FeatureNormalization, FrontEnd, mfcc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(
    not HAVE_ESPEAK,
    reason="needs espeak-ng: `sudo apt-get install espeak-ng` (scripts/setup.sh does it as root)",
)
# A small medium-difficulty set (babble, band-pass and reverb all drawn): 2 chunks of 256 + 44.
SMALL = {"keywords": ["Lights On", "hey  kettle", "stop"], "difficulty": "medium", "size": 300,
         "seed": 3, "verbose": 0}


# --- vocabulary -------------------------------------------------------------------------------

def test_keywords_are_normalized_and_labels_ordered():
    assert vocabulary.check_keywords(None) == kws.DEFAULT_KEYWORDS
    assert kws.DEFAULT_KEYWORDS == (
        "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
    words = vocabulary.check_keywords(["Lights  On", " hey-kettle "])
    assert words == ("lights on", "hey kettle")
    assert vocabulary.labels(words) == ("lights on", "hey kettle", "silence", "unknown")


@pytest.mark.parametrize(
    "keywords, error, match",
    [
        ([], ValueError, r"at least one keyword"),
        (["yes", "No", " yes "], ValueError, r"'yes' and ' yes ' are the same"),
        ("yes", TypeError, r"pass \['yes'\]"),
        ([3], TypeError, r"string. Received: 3"),
        (["turn <on>"], ValueError, r"letters, digits"),
        (["silence"], ValueError, r"reserved label"),
        (["one two three four five"], ValueError, r"at most 4 words"),
    ],
)
def test_bad_keywords(keywords, error, match):
    with pytest.raises(error, match=match):
        vocabulary.check_keywords(keywords)


def test_unknown_vocabulary_never_holds_a_keyword():
    assert not set(kws.DEFAULT_KEYWORDS) & set(kws.UNKNOWN_WORDS)
    assert len(set(kws.UNKNOWN_WORDS)) == len(kws.UNKNOWN_WORDS)
    # The user chose the keywords, not the filler list: the default leaves them out ...
    words = vocabulary.check_unknown_words(None, ("cat", "lamp"))
    assert "cat" not in words and len(words) == len(kws.UNKNOWN_WORDS) - 1
    # ... while a list the user passed is theirs: a keyword in it is refused.
    with pytest.raises(ValueError, match=r"\['lamp'\] also in `unknown_words`"):
        vocabulary.check_unknown_words(["Lamp", "desk"], ("cat", "lamp"))
    assert vocabulary.sound_alikes(("to", "lamp"), ("two", "cat"), ("tu:", "lamp"),
                                   ("tu:", "kat")) == ["two"]
    words = vocabulary.check_unknown_words(kws.default_unknown_words(exclude=["Cat"]), ("cat",))
    assert "cat" not in words and len(words) == len(kws.UNKNOWN_WORDS) - 1
    with pytest.raises(ValueError, match="sounds the same as the unknown word 'two'"):
        vocabulary.check_homophones(("to",), ("two",), ("tu:",), ("tu:",))
    with pytest.raises(ValueError, match="Keywords 'to' and 'too' sound the same"):
        vocabulary.check_homophones(("to", "too"), (), ("tu:", "tu:"), ())


# --- speaker splits and sizes -----------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 7])
def test_speaker_split_is_disjoint_and_complete(seed):
    accents = tuple(f"a{i}" for i in range(8))
    variants = tuple(f"v{i}" for i in range(97))
    s = splits.split_speakers(accents, variants, seed)
    assert len(s.test_accents) == 2 and set(s.seen_accents) | set(s.test_accents) == set(accents)
    assert not set(s.seen_accents) & set(s.test_accents)
    groups = [set(s.train_variants), set(s.val_variants), set(s.test_variants)]
    assert [len(g) for g in groups] == [68, 10, 19]
    assert set.union(*groups) == set(variants) and sum(map(len, groups)) == len(variants)
    train = set(s.speakers("train"))
    for other in ("val", "test_voices", "test_accents"):
        speakers = set(s.speakers(other))
        assert speakers and not speakers & train
        assert not {v for _, v in speakers} & set(s.train_variants)
    assert {a for a, _ in s.speakers("test_accents")} == set(s.test_accents)
    assert s == splits.split_speakers(accents, variants, seed)


def test_split_sizes_and_too_small():
    assert splits.split_sizes(1200, 12) == {
        "train": 840, "val": 120, "test_voices": 120, "test_accents": 120}
    assert splits.minimum_size(12) == 120
    with pytest.raises(ValueError, match=r"size=119 is too small.*Expected size >= 120"):
        splits.split_sizes(119, 12)
    with pytest.raises(ValueError, match="at least 2 accents"):
        splits.split_speakers(("en",), ("a", "b", "c"), 0)
    with pytest.raises(ValueError, match=r"Unknown size 'huge'"):
        dataset.resolve_size("huge")
    assert dataset.resolve_size("Medium") == 20000


def test_plan_deals_classes_and_speakers_evenly():
    speakers = [("en", f"v{i}") for i in range(7)]
    clips = plan.plan_split("train", 120, ("yes", "no"), ("cat", "dog"), speakers,
                            augment.DIFFICULTIES["medium"], seed=0)
    labels = np.array([c.label for c in clips])
    np.testing.assert_array_equal(np.bincount(labels), [30, 30, 30, 30])
    counts = np.unique([c.variant for c in clips], return_counts=True)[1]
    assert counts.min() >= 120 // 7 and counts.max() <= 120 // 7 + 1
    assert {c.text for c in clips if c.label == 2} == {None}
    assert {c.text for c in clips if c.label == 3} <= {"cat", "dog"}
    assert all(110 <= c.speed <= 200 and 20 <= c.pitch <= 80 for c in clips)
    assert all(0 <= c.snr_db <= 20 for c in clips)
    assert 0.3 < np.mean([c.reverb is not None for c in clips]) < 0.7


# --- augmentation (pure signal processing) ----------------------------------------------------

def test_difficulty_levels():
    easy = augment.get_difficulty("EASY")
    assert easy.snr_db == (10.0, 30.0) and easy.noise_types == ("white", "pink")
    assert easy.p_bandpass == 0 and easy.p_reverb == 0
    medium, hard = augment.DIFFICULTIES["medium"], augment.DIFFICULTIES["hard"]
    assert medium.snr_db == (0.0, 20.0) and medium.uses_babble
    assert medium.p_bandpass > 0 and medium.p_reverb > 0
    assert hard.snr_db == (-5.0, 15.0)
    assert json.loads(json.dumps(hard.to_dict()))["snr_db"] == [-5.0, 15.0]
    with pytest.raises(ValueError, match=r"Unknown difficulty 'extreme'. Expected one of"):
        augment.get_difficulty("extreme")
    with pytest.raises(TypeError, match="difficulty=3"):
        augment.get_difficulty(3)


def test_noises_have_unit_rms_and_the_right_spectrum():
    rng = np.random.default_rng(0)
    white, pink = augment.white_noise(rng, 16000), augment.pink_noise(rng, 16000)
    assert augment.rms(white) == pytest.approx(1.0) and augment.rms(pink) == pytest.approx(1.0)
    power = np.abs(np.fft.rfft(pink)) ** 2
    f = np.fft.rfftfreq(16000, 1 / 16000)
    low, high = power[(f > 100) & (f < 200)].mean(), power[(f > 1000) & (f < 2000)].mean()
    assert 10 * np.log10(low / high) == pytest.approx(10.0, abs=1.5)  # 1/f: 10 dB per decade
    pool = [np.sin(np.arange(4000) * 0.1), np.sin(np.arange(6000) * 0.3)]
    assert augment.rms(augment.babble_noise(rng, pool, 16000, 3)) == pytest.approx(1.0)


def test_bandpass_and_reverb():
    t = np.arange(16000) / 16000
    tone = lambda hz: np.sin(2 * np.pi * hz * t)
    passed = augment.bandpass(tone(1000), 300, 3000)
    assert augment.rms(passed) / augment.rms(tone(1000)) == pytest.approx(1.0, abs=0.02)
    assert augment.rms(augment.bandpass(tone(300), 300, 3000)) == pytest.approx(
        augment.rms(tone(300)) / np.sqrt(2), rel=0.02)  # -3 dB at the corner
    assert augment.rms(augment.bandpass(tone(60), 300, 3000)) < 0.05
    impulse = np.zeros(16000)
    impulse[0] = 1.0
    wet = augment.reverb(impulse, 0.3, 6.0, np.random.default_rng(0))
    assert wet[0] == pytest.approx(1.0)
    assert 10 * np.log10(1.0 / np.sum(wet[1:] ** 2)) == pytest.approx(6.0, abs=0.01)


def test_render_clip_level_and_snr():
    speech = np.sin(np.arange(8000) * 0.2)
    clip = plan.Clip("train", 0, 0, "yes", "en", "m1", 150, 50, offset=0.5, level_dbfs=-20.0,
                     snr_db=10.0, noise="white", talkers=2, bandpass=None, reverb=None,
                     seed=(0, 0, 0, 2))
    x = augment.render_clip(speech, clip, clip.rng())
    assert x.shape == (16000,) and x.dtype == np.float32
    np.testing.assert_array_equal(x * 32768, np.round(x * 32768))  # 16-bit steps
    noise = x.astype(np.float64).copy()
    noise[4000:12000] -= speech * 0.1 / augment.rms(speech)
    assert 20 * np.log10(augment.rms(noise)) == pytest.approx(-30.0, abs=0.1)
    silence = augment.render_clip(None, clip, clip.rng())
    assert 20 * np.log10(augment.rms(silence)) == pytest.approx(-30.0, abs=0.1)
    np.testing.assert_array_equal(silence, augment.render_clip(None, clip, clip.rng()))


# --- front end --------------------------------------------------------------------------------

def test_frontend_matches_mlperf_tiny_and_silence_gives_exact_mfcc():
    fe = FrontEnd()
    assert fe.shape == (49, 10, 1)
    assert fe.to_dict()["window_samples"] == 480 and fe.to_dict()["stride_samples"] == 320
    assert (fe.num_mel_bins, fe.lower_edge_hz, fe.upper_edge_hz) == (40, 20.0, 4000.0)
    out = mfcc(np.zeros((2, 16000)))
    assert out.shape == (2, 49, 10) and out.dtype == np.float32
    # All 40 log-mel bands equal log(1e-6): c0 = sqrt(2 * 40) * log(1e-6), the rest 0.
    np.testing.assert_allclose(out[..., 0], np.sqrt(80) * np.log(1e-6), rtol=1e-5)
    np.testing.assert_allclose(out[..., 1:], 0.0, atol=1e-3)


def test_feature_normalization():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=np.arange(10) * 5.0, scale=np.arange(1, 11), size=(50, 49, 10))
    norm = FeatureNormalization.from_features(x)
    y = norm.apply(x[..., None])
    assert y.shape == (50, 49, 10, 1) and y.dtype == np.float32
    np.testing.assert_allclose(y.mean(axis=(0, 1, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(0, 1, 3)), 1.0, atol=1e-5)
    assert json.loads(json.dumps(norm.to_dict()))["mean"][3] == pytest.approx(15.0, abs=0.3)


# --- cache files ------------------------------------------------------------------------------

def test_atomic_writes_leave_no_partial_file(tmp_path, monkeypatch):
    entry = cache.Entry(str(tmp_path), {"a": 1})
    assert cache.cache_key({"a": 1}) == entry.key != cache.cache_key({"a": 2})
    entry.start()

    def broken_save(f, array, allow_pickle):
        f.write(b"\x93NUMPY half a header")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        entry.save_chunk(0, np.zeros((2, 49, 10)))
    monkeypatch.undo()
    assert sorted(os.listdir(entry.partial)) == ["params.json"]
    assert entry.load_chunk(0, (2, 49, 10)) is None
    entry.save_chunk(0, np.ones((2, 49, 10)))
    np.testing.assert_array_equal(entry.load_chunk(0, (2, 49, 10)), 1.0)
    assert entry.load_chunk(0, (3, 49, 10)) is None  # wrong shape: discarded
    with open(entry.path, "wb") as f:
        f.write(b"PK\x03\x04 not a zip")
    assert entry.load(["x"]) is None and not os.path.exists(entry.path)
    monkeypatch.setenv(cache.CACHE_ENV_VAR, str(tmp_path / "env"))
    assert cache.resolve_cache_dir() == str(tmp_path / "env")
    assert cache.resolve_cache_dir(tmp_path / "arg") == str(tmp_path / "arg")
    monkeypatch.delenv(cache.CACHE_ENV_VAR)
    assert cache.resolve_cache_dir().endswith(os.path.join(".cache", "tfdynhp"))


# --- bad input: refused before any synthesis --------------------------------------------------

@pytest.fixture
def no_synthesis(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("synthesized before the arguments were checked")

    monkeypatch.setattr(espeak, "synthesize", refuse)


def test_missing_espeak_is_a_one_line_error(tmp_path, monkeypatch, no_synthesis):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(kws.EspeakNotFoundError) as e:
        kws.load_synthetic_kws(size="ci", cache_dir=tmp_path / "c", verbose=0)
    assert isinstance(e.value, FileNotFoundError)
    assert "\n" not in str(e.value) and "apt-get install espeak-ng" in str(e.value)
    assert not (tmp_path / "c").exists()


@needs_espeak
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"keywords": []}, ValueError, "at least one keyword"),
        ({"keywords": ["Yes", "no", "yes "]}, ValueError, "'Yes' and 'yes ' are the same"),
        ({"keywords": ["yes", "cat"], "unknown_words": ["cat", "dog"]}, ValueError,
         r"\['cat'\] also in `unknown_words`"),
        ({"keywords": ["to"], "unknown_words": ["two", "dog"]}, ValueError,
         "'to' sounds the same as the unknown word 'two'"),
        ({"keywords": ["to", "too"]}, ValueError, "Keywords 'to' and 'too' sound the same"),
        ({"size": 100}, ValueError, "too small to split by speaker"),
        ({"keywords": ["a", "b"], "size": 39}, ValueError, r"Expected size >= 40"),
        ({"difficulty": "extreme"}, ValueError, "Unknown difficulty"),
        ({"accents": ["en"]}, ValueError, "at least 2 accents"),
        ({"accents": ["en", "fr"]}, ValueError, r"Unknown accents \['fr'\]"),
        ({"variants": ["m1", "m2"]}, ValueError, "at least 3 variants"),
        ({"variants": ["m1", "m2", "nobody"]}, ValueError, r"Unknown variants \['nobody'\]"),
        ({"seed": -1}, ValueError, "seed=-1"),
        ({"normalize": "yes"}, TypeError, "normalize='yes'"),
        ({"workers": 0}, ValueError, "workers=0"),
    ],
)
def test_bad_input_is_refused_before_synthesis(tmp_path, no_synthesis, kwargs, error, match):
    with pytest.raises(error, match=match):
        kws.load_synthetic_kws(**{"size": "ci", "verbose": 0, **kwargs}, cache_dir=tmp_path)
    assert not os.listdir(tmp_path)


@needs_espeak
@pytest.mark.parametrize("verbose", [0, 1])
def test_keywords_of_the_default_unknown_vocabulary_are_left_out_of_it(
        tmp_path, no_synthesis, caplog, capsys, verbose):
    # "music" is a default unknown word, "two" sounds like the keyword "to": both leave the
    # default vocabulary, the output (or the log) says so, and the data set is made (here:
    # synthesis starts, which `no_synthesis` stops).
    caplog.set_level("INFO", logger="tfdynhp.datasets.kws")
    with pytest.raises(AssertionError, match="synthesized"):
        tfdynhp.datasets.load("synthetic-kws", keywords=["lights", "music", "to"], size="ci",
                              cache_dir=tmp_path, verbose=verbose)
    said = capsys.readouterr().out if verbose else caplog.text
    assert "2 word(s) of the default 'unknown' vocabulary left out" in said
    assert "two, music." in said or "music, two." in said


@needs_espeak
def test_a_phrase_too_long_for_one_second_is_refused_before_the_cache(tmp_path):
    long = "antidisestablishmentarianism versus floccinaucinihilipilification"
    with pytest.raises(ValueError, match=r"lasts \d\.\d\d s .* must fit in the 1 s clip"):
        kws.load_synthetic_kws([long], size="ci", cache_dir=tmp_path, verbose=0)
    assert not os.listdir(tmp_path)


def test_load_dispatches_and_lists_synthetic_kws(tmp_path, no_synthesis):
    with pytest.raises(ValueError, match="'synthetic-kws'"):
        tfdynhp.datasets.load("no-such-set")
    with pytest.raises(ValueError, match="at least one keyword"):
        tfdynhp.datasets.load("synthetic-kws", keywords=[], cache_dir=tmp_path)


# --- espeak-ng ----------------------------------------------------------------------------------

@needs_espeak
def test_synthesis_is_deterministic_and_every_speaker_sounds_different():
    a = espeak.synthesize("left", "en-us+m3", 150, 50)
    assert a.dtype == np.float32 and 0.2 < len(a) / 16000 < 1.0 and np.abs(a).max() <= 1
    np.testing.assert_array_equal(a, espeak.synthesize("left", "en-us+m3", 150, 50))
    variants = kws.list_variants()
    assert len(variants) >= 90 and not set(variants) & set(espeak.EXCLUDED_VARIANTS)
    sounds = {espeak.synthesize("go", f"en+{v}", 150, 50).tobytes() for v in variants}
    assert len(sounds) == len(variants)  # no two variants identical: "unseen" means unseen
    sounds = {espeak.synthesize("water", f"{a}+m1", 150, 50).tobytes() for a in kws.ACCENTS}
    assert len(sounds) == len(kws.ACCENTS)
    assert espeak.phonemes(["two", "to", "lights on"])[:2] == ("tu:", "tu:")


def test_resample_keeps_a_tone():
    t = np.arange(22050) / 22050
    y = espeak.resample(np.sin(2 * np.pi * 440 * t), 22050, 16000)
    assert len(y) == 16000 and y.dtype == np.float32
    np.testing.assert_allclose(y[100:-100], np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
                               [100:-100], atol=2e-3)
    x = np.concatenate([np.zeros(800), np.ones(1600), np.zeros(1600)])
    assert len(espeak.trim_silence(x, 16000)) == 1600 + 2 * 320


# --- generation: determinism, resumption, speaker disjointness --------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The SMALL set generated once with 2 workers: (data, info, cache dir)."""
    folder = tmp_path_factory.mktemp("kws-small")
    data, info = kws.load_synthetic_kws(**SMALL, cache_dir=folder, workers=2, return_info=True)
    return data, info, folder


def load_bench():
    """`bench/kws_data.py`, whose plain CNN the learnability test trains."""
    spec = importlib.util.spec_from_file_location("kws_data", os.path.join(ROOT, "bench",
                                                                           "kws_data.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_same(a, b):
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@needs_espeak
@pytest.mark.slow
def test_generation_is_deterministic_and_cached(small, tmp_path, monkeypatch):
    data, info, folder = small
    again = kws.load_synthetic_kws(**SMALL, cache_dir=tmp_path, workers=1)
    assert_same(data, again)  # fresh cache, other worker count: identical arrays
    assert os.listdir(tmp_path / "synthetic-kws") == [os.path.basename(info.cache_path)]
    monkeypatch.setattr(espeak, "synthesize", lambda *a, **k: pytest.fail("not cached"))
    assert_same(data, tfdynhp.datasets.load("synthetic-kws", **SMALL, cache_dir=folder))
    speakers = info.speaker_split.speakers("train")
    draws = [[(c.label, c.speed, c.variant) for c in plan.plan_split(
        "train", 210, info.keywords, info.unknown_words, speakers, info.difficulty, seed)]
        for seed in (3, 4)]
    assert draws[0] != draws[1]  # another seed, other clips


@needs_espeak
@pytest.mark.slow
def test_interrupted_generation_resumes_without_a_loadable_half_entry(small, tmp_path,
                                                                     monkeypatch):
    data, info, _ = small
    saved = []
    real_save = cache.Entry.save_chunk

    def save_then_die(self, index, chunk):
        if saved:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while chunk 1 was being made
        real_save(self, index, chunk)
        saved.append(index)

    monkeypatch.setattr(cache.Entry, "save_chunk", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        kws.load_synthetic_kws(**SMALL, cache_dir=tmp_path)
    monkeypatch.setattr(cache.Entry, "save_chunk", real_save)
    folder = tmp_path / "synthetic-kws"
    key = os.path.basename(info.cache_path)[: -len(".npz")]
    assert sorted(os.listdir(folder)) == [key + ".partial"]  # no finished entry
    assert sorted(os.listdir(folder / (key + ".partial"))) == ["chunk-00000.npy", "params.json"]

    rendered = []
    real_render = dataset._render
    monkeypatch.setattr(dataset, "_render", lambda clip, pools: (
        rendered.append(clip.index), real_render(clip, pools))[1])
    resumed = kws.load_synthetic_kws(**SMALL, cache_dir=tmp_path)
    assert len(rendered) == SMALL["size"] - dataset.CHUNK  # chunk 0 was reused
    assert_same(data, resumed)
    assert sorted(os.listdir(folder)) == [key + ".npz"]  # partial chunks cleaned up


@needs_espeak
@pytest.mark.slow
def test_splits_are_speaker_disjoint_labelled_and_shaped(small):
    (train, test), info, _ = small
    assert info.labels == ("lights on", "hey kettle", "stop", "silence", "unknown")
    assert info.keywords == ("lights on", "hey kettle", "stop")
    sizes = {name: len(y) for name, (_, y) in info.splits.items()}
    assert sizes == {"train": 210, "val": 30, "test_voices": 30, "test_accents": 30, "test": 60}
    for name, (x, y) in info.splits.items():
        assert x.shape == (len(y), 49, 10, 1) and x.dtype == np.float32 and y.dtype == np.int32
        assert sorted(set(y.tolist())) == [0, 1, 2, 3, 4]  # every class in every split
        meta = info.metadata[name]
        assert set(meta["text"][y == 3]) == {""}
        assert set(meta["text"][y == 1]) == {"hey kettle"}
        assert set(meta["text"][y == 4]) <= set(kws.UNKNOWN_WORDS)
    np.testing.assert_array_equal(train[1], info.splits["train"][1])
    np.testing.assert_array_equal(test[0], np.concatenate(
        [info.splits["test_voices"][0], info.splits["test_accents"][0]]))

    def heard(name):
        m = info.metadata[name]
        return set(zip(m["accent"], m["variant"]))

    train_speakers = heard("train")
    train_variants = {v for _, v in train_speakers}
    train_accents = {a for a, _ in train_speakers}
    for name in ("val", "test_voices", "test_accents"):
        assert not heard(name) & train_speakers
        assert not {v for _, v in heard(name)} & train_variants
    assert {a for a, _ in heard("test_voices")} <= train_accents
    assert not {a for a, _ in heard("test_accents")} & train_accents
    assert set(info.speakers("train")) >= {f"{a}+{v}" for a, v in train_speakers}
    # Normalized with the training split's statistics, recorded for shipping with a model.
    x = train[0]
    np.testing.assert_allclose(x.mean(axis=(0, 1, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=(0, 1, 3)), 1.0, atol=1e-4)
    summary = json.loads(json.dumps(info.to_dict()))
    assert summary["frontend"]["num_frames"] == 49 and len(summary["normalization"]["std"]) == 10
    assert summary["labels"][-2:] == ["silence", "unknown"]


@needs_espeak
@pytest.mark.slow
def test_raw_features_on_request(small, monkeypatch):
    _, info, folder = small
    monkeypatch.setattr(espeak, "synthesize", lambda *a, **k: pytest.fail("not cached"))
    _, raw = kws.load_synthetic_kws(**SMALL, cache_dir=folder, normalize=False,
                                    return_info=True)
    assert not raw.normalized and raw.normalization == info.normalization
    x_raw = raw.splits["train"][0]
    np.testing.assert_allclose(x_raw.mean(axis=(0, 1, 3)), info.normalization.mean, atol=1e-3)
    assert max(info.normalization.std) > 2 * min(info.normalization.std)  # unequal ranges
    np.testing.assert_allclose(info.normalization.apply(raw.splits["test_accents"][0]),
                               info.splits["test_accents"][0], rtol=1e-6, atol=1e-6)


# --- learnability -----------------------------------------------------------------------------

@needs_espeak
@pytest.mark.slow
def test_a_plain_cnn_learns_the_easy_set_on_unseen_voices(tmp_path):
    # The plain CNN of bench/kws_data.py (stock Conv2D layers, no gates), 15 epochs. Measured
    # (bench/results/kws_data.md): 72.5 % on the 120 held-out-voice clips, 60 % on held-out
    # accents; chance is 1/12 = 8.3 %. The thresholds leave a wide margin for run-to-run noise.
    (_, _), info = kws.load_synthetic_kws(difficulty="easy", size="ci", seed=0,
                                          cache_dir=tmp_path, verbose=0, return_info=True)
    scores = load_bench().learnability(info, epochs=15, seed=0)
    voices, accents = scores["test_voices"], scores["test_accents"]
    assert voices >= 0.45, f"held-out voices accuracy {voices:.3f}"
    assert accents >= 0.30, f"held-out accents accuracy {accents:.3f}"
