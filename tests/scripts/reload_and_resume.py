"""Loads a pruned `.keras` model in a fresh process, predicts, and resumes training."""

import sys

import keras
import numpy as np
from tfdynhp.callbacks import DynHPCallback

import tfdynhp

path, data_path, out_path = sys.argv[1:4]
model = keras.models.load_model(path)
data = np.load(data_path)
predictions = model.predict(data["x"], verbose=0)
units_before = [group.units for group in tfdynhp.graph.gated_groups(model)]
history = model.fit(
    data["x"], data["y"], epochs=2, batch_size=64, verbose=0, callbacks=[DynHPCallback()]
)
np.savez(
    out_path,
    predictions=predictions,
    units_before=units_before,
    iterations=int(model.optimizer.iterations.numpy()),
    loss=history.history["loss"],
)
