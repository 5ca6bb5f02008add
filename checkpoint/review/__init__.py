"""What is governed and how a promote request is decided: changes, policy, workflow, checks, diff."""
