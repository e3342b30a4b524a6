"""Training the embedded colorization model (``chromaflow train``)."""
