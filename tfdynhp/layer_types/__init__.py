"""tfdynhp.layer_types."""
