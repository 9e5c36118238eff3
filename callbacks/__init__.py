"""Keras callbacks of tfdynhp (installed as ``tfdynhp.callbacks``)."""

from tfdynhp.callbacks.dynhp import DynHPCallback

__all__ = ["DynHPCallback"]
