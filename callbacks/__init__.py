"""Keras callbacks of tfdynhp (installed as ``tfdynhp.callbacks``)."""

from tfdynhp.callbacks.activation_density import ActivationDensityCallback
from tfdynhp.callbacks.dynhp import DynHPCallback

__all__ = ["ActivationDensityCallback", "DynHPCallback"]
