"""Building blocks shared by every model family (encoders, decoders, embeddings, likelihoods)."""
