"""Mirror mode: plan who left a segment, keep the plan on disk, apply it after the pipeline."""
