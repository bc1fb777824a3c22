"""`sealnet cluster`: a federation on one machine (or a few), built from the
same control plane and node agent processes a real deployment runs."""
