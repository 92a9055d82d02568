"""Retrieval-augmented generation: embedders, chunking, indexes and knowledge bases."""
