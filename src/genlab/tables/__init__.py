"""Tables: reading CSV / Parquet, an editable schema, and the reversible transform tabular synthesizers
train on (mode-specific normalisation of numbers, one-hot categories, missingness indicators)."""
