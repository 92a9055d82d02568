"""The data stage: raw files to versioned, clean datasets."""
