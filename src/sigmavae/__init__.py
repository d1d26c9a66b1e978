"""sigmavae: variational autoencoders with calibrated decoders."""
