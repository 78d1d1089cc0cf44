"""Pipeline steps, one module per verb, in pipeline order."""
