"""Read models: one module per model, each a function from issue event to SQL."""
