"""Activity functions: thin adapters between the orchestration's JSON contracts, storage and the inference core."""
