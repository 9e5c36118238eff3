"""tfdynhp.policies."""
