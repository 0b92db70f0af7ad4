"""What a run is configured with: settings and the target models."""
