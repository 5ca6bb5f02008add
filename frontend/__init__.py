"""Templates, stylesheets and scripts (installed as ``checkpoint.frontend``)."""
