"""genlab: measure your data, train the generative model family that fits, prove what its samples are worth."""

__version__ = "0.1.0"
