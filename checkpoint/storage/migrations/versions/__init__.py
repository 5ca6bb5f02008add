"""Migration scripts, applied in order by ``checkpoint db upgrade``."""
