"""Studies: many runs answering one question about the user's data, each arm resumable and reported."""
