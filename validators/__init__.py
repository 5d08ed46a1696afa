"""Gates, verdicts and model checks (imported as `modelpress.validators`)."""
