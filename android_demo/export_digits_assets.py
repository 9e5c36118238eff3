"""Train a small digits MLP and export its assets into this Android project.

    .venv/bin/python android_demo/export_digits_assets.py

Writes app/src/main/assets/{model.tflite, labels.txt, model.json, sample.json}. To ship your
own model instead, call `tfdynhp.converters.export(model, "android", "android_demo", x_train)`.
"""

import os

import keras
from sklearn.datasets import load_digits

from tfdynhp import converters

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    keras.utils.set_random_seed(0)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=25, batch_size=32, verbose=0)
    paths = converters.export(
        model, "android", HERE, x[:200], labels=[str(d) for d in range(10)],
        preprocessing="8x8 digit image, row-major, pixel values divided by 16 (range 0..1).",
    )
    for role, path in sorted(paths.items()):
        print(f"{role:>10}: {os.path.relpath(path, os.getcwd())}")


if __name__ == "__main__":
    main()
