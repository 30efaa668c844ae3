"""Scale, out of core: sparse datasets of production size, flat memory, lazy labels."""
