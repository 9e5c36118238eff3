"""tfdynhp.graph."""
