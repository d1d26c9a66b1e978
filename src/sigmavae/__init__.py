"""sigmavae: variational autoencoders with calibrated decoders.

data -> model -> objective -> trainer -> metrics -> reports:

* :mod:`sigmavae.data`: data sets of 8-bit images (``uint8`` tensors), by name;
* :mod:`sigmavae.models`: networks that return what they computed (the model protocol);
* :mod:`sigmavae.likelihoods`: decoder heads ``p(x|z)`` ("calibrated decoders"), by name;
* :mod:`sigmavae.objective`: ELBO terms, importance weights, samples from a model and its head;
* :mod:`sigmavae.training`: the trainer;
* :mod:`sigmavae.metrics`: evaluation metrics and reports.
"""
