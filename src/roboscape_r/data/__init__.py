"""Data stage: ManiSkill tasks and scene variants, collection, and the HDF5 dataset."""
