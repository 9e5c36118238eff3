"""tfdynhp: Dynamic Hard Pruning (DynHP) for Keras 3.

Train a network under a fixed memory budget by physically removing units whose Hard Concrete
gates stay closed, reuse the freed memory for larger mini-batches, and export int8 TFLite.
"""

__version__ = "0.1.0"
