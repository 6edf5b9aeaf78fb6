"""Provider adapters for SMS and email, one file per provider, behind `base`'s protocols."""
