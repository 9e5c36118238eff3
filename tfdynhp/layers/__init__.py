"""The Keras layers of the method: `HardConcreteGate` and `SelectFeatures`."""

from tfdynhp.layers.gate import HardConcreteGate, SelectFeatures

__all__ = ["HardConcreteGate", "SelectFeatures"]
