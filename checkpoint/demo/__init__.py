"""The demo (`checkpoint demo`): example data, training, process supervision. Not the product."""
