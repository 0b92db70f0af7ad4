"""Pure data that flows through the pipeline: changes, plans, outcomes, results, errors."""
