"""Keras callbacks of tfdynhp (installed as ``tfdynhp.callbacks``)."""
