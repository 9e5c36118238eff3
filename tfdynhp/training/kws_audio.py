"""The raw-audio firmware of a keyword spotter trained on the micro front end's features.

The `mcu` bundle becomes a raw-audio bundle (`converters.write_audio_mcu`): 1 s of 16 kHz
int16 PCM in, the keyword out, the front end running on the device; `agreement` classifies
every held-out clip on the device and compares with the Python pipeline.
"""

import numpy as np

TEST_CLIPS = 2  # raw clips embedded in the firmware (32 kB of flash each)


def write_firmware_bundle(bundle_dir, tflite, info, kernels=None, test_clips=TEST_CLIPS):
    """Rewrites the `mcu` bundle as a raw-audio bundle: front end + classifier, raw test clips
    (the first `test_clips` held-out clips). Returns the written paths."""
    from tfdynhp.converters import audio_mcu

    clips = np.asarray(info.pcm["test"][:test_clips], np.int16)
    return audio_mcu.write_audio_mcu(
        tflite, info.frontend_tflite, bundle_dir, clips, info.frontend,
        labels=list(info.labels), kernels=kernels,
        preprocessing=(f"Input: 1 s of {info.frontend.sample_rate} Hz int16 PCM; the front end "
                       "(frontend.tflite) runs on the device."),
    )


def agreement(bundle_dir, info, tflm_dir, target, kernels=None, cache_dir=None):
    """Device vs Python pipeline on every held-out clip (`audio_mcu.evaluate_clips`)."""
    from tfdynhp.converters import audio_mcu

    return audio_mcu.evaluate_clips(bundle_dir, info.pcm["test"], tflm_dir, target,
                                    kernels=kernels, cache_dir=cache_dir)
