"""tfdynhp.costs."""
