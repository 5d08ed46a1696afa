"""Names shared by the technique, the pipeline steps and registration (no heavy imports)."""

COMPRESSED_FILE = "model.mpdc"
