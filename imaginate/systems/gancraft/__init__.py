"""GANcraft: neural rendering of block worlds."""
