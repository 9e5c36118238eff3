"""Int8 TFLite converters and deployment bundles (installed as ``tfdynhp.converters``)."""
