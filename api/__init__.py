"""HTTP API of the app: starters, request validation and the persisted-results endpoint."""
