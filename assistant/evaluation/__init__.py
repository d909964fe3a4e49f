"""Evaluation and benchmarks, kept apart from the product: golden-set runs (`golden`, `squad`, `scoring`,
`risk`, `report`, `run`), BEIR retrieval benchmarks (`beir`, `bench`) and the embedding cache they use."""
