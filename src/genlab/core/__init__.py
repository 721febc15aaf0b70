"""What every layer of genlab shares and that imports nothing else of genlab: errors, atomic IO and the run
directory, batches and batch streams, seeded splits, DataSpec, validators, and the Dataset and Modality
protocols."""
