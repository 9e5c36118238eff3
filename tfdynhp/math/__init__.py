"""tfdynhp.math."""
