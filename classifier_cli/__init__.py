"""Command-line client (``classify``) for the ResNet classifier app: uses only its public HTTP API."""
