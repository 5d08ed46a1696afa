"""A toy technique, added the way a real one is: this folder plus one `register()` line (see test_technique_registry)."""
