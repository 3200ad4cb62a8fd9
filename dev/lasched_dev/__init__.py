"""lasched's developer tools: the dev cluster, the demo, plots (not in the scheduler's image)."""
