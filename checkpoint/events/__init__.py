"""What happened: the keyed audit chain, history, webhooks."""
