"""Training: the papers' recipes, schedules, strategies and the custom loop."""
