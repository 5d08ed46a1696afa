"""Pipelines that chain components (imported as `modelpress.pipelines`)."""
