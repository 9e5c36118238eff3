"""Streaming keyword spotting: the micro front end over a continuous stream, as the device does.

The front end runs on every 30 ms window, 20 ms apart, without a reset (its noise estimate
follows the stream); the last `num_frames` feature frames are kept in a ring; every
`classify_every` frames the classifier runs on the ring, and the keyword is decided on the
average of the last `average_window` classifications (micro_speech's `RecognizeCommands`):
the best averaged class is reported when it is not ignored (silence, unknown), its averaged
score (`int8 + 128`, 0..255) reaches `threshold`, and `suppression_frames` frames have passed
since the last report. Integer arithmetic throughout, the same in `main.cc` (raw-audio bundles
built with `STREAM_FILE`), so the device reports the same detections (tested).

`recognize` is the pure decision rule; `detect` runs the models in TFLite Micro's Python
interpreter on a stream and applies it.
"""

import dataclasses

import numpy as np

from tfdynhp.datasets.kws import micro_frontend

FRONTEND = micro_frontend.DEFAULT


@dataclasses.dataclass(frozen=True)
class Recognizer:
    """Decision rule of the streaming keyword spotter.

    Attributes:
        classify_every: frames (20 ms each) between classifications. Defaults to 5 (100 ms).
        average_window: classifications averaged. Defaults to 4.
        threshold: averaged score (0..255) to report a keyword. Defaults to 170.
        suppression_frames: frames after a report during which nothing is reported. Defaults
            to 50 (1 s).
        ignore: class indices never reported (e.g. silence and unknown).
    """

    classify_every: int = 5
    average_window: int = 4
    threshold: int = 170
    suppression_frames: int = 50
    ignore: tuple = ()

    def to_dict(self):
        return dataclasses.asdict(self)


def recognize(scores, frames, recognizer):
    """The detections of a sequence of classifications (pure).

    Args:
        scores: int array `(classifications, classes)` of scores 0..255 (int8 output + 128).
        frames: the frame index (0-based, the newest frame in the ring) of each classification.
        recognizer: a `Recognizer`.

    Returns:
        List of `(frame, class, averaged score)`.
    """
    scores = np.asarray(scores, np.int64)
    detections, last = [], None
    for i, frame in enumerate(frames):
        window = scores[max(0, i + 1 - recognizer.average_window):i + 1]
        average = window.sum(axis=0) // len(window)
        best = int(np.argmax(average))
        if best in recognizer.ignore or average[best] < recognizer.threshold:
            continue
        if last is not None and frame - last < recognizer.suppression_frames:
            continue
        detections.append((int(frame), best, int(average[best])))
        last = frame
    return detections


def stream_scores(frontend_tflite, classifier_tflite, pcm, recognizer, table, fe=FRONTEND):
    """Runs front end and classifier over one int16 stream in TFLite Micro's Python interpreter.

    Args:
        frontend_tflite, classifier_tflite: the two models.
        pcm: one int16 stream, at least one clip long.
        recognizer: a `Recognizer` (its `classify_every`).
        table: int8 `(256,)`: the front end's output q -> the classifier's input, at q + 128
            (`tfdynhp.converters.audio_mcu.feature_map`, as the firmware's `kFeatureToInput`).
        fe: the `MicroFrontEnd`.

    Returns:
        `(frames, scores)`: the frame index of each classification and its scores (0..255).
    """
    from tflite_micro.python.tflite_micro import runtime

    pcm = np.asarray(pcm)
    if pcm.ndim != 1 or pcm.dtype != np.int16 or len(pcm) < fe.clip_samples:
        raise ValueError(f"Expected one int16 stream of at least {fe.clip_samples} samples. "
                         f"Received: {pcm.dtype} array of shape {pcm.shape}.")
    front = runtime.Interpreter.from_bytes(frontend_tflite,
                                           arena_size=micro_frontend.ARENA_BYTES)
    front.reset()
    table = np.asarray(table, np.int8)
    classifier = runtime.Interpreter.from_bytes(classifier_tflite, arena_size=1 << 20)
    input_shape = tuple(classifier.get_input_details(0)["shape"])
    n_windows = 1 + (len(pcm) - fe.window_samples) // fe.stride_samples
    ring = np.zeros((fe.num_frames, fe.num_coefficients), np.int8)
    frames, scores = [], []
    for k in range(n_windows):
        window = pcm[k * fe.stride_samples:k * fe.stride_samples + fe.window_samples]
        front.set_input(window.reshape(1, -1), 0)
        front.invoke()
        ring = np.roll(ring, -1, axis=0)
        ring[-1] = table[np.asarray(front.get_output(0)).reshape(-1).astype(np.int64) + 128]
        count = k + 1
        if count >= fe.num_frames and (count - fe.num_frames) % recognizer.classify_every == 0:
            classifier.set_input(ring.reshape(input_shape), 0)
            classifier.invoke()
            out = np.asarray(classifier.get_output(0)).reshape(-1).astype(np.int64)
            frames.append(k)
            scores.append(out + 128)
    return frames, np.asarray(scores, np.int64)


def detect(frontend_tflite, classifier_tflite, pcm, recognizer, table, fe=FRONTEND):
    """Keywords detected in an int16 stream: `[(frame, class, score), ...]` (`recognize`)."""
    frames, scores = stream_scores(frontend_tflite, classifier_tflite, pcm, recognizer, table,
                                   fe)
    return recognize(scores, frames, recognizer)
