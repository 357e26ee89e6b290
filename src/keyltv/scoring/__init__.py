"""Turn model outputs into the key-account list: tiers, segments, flags, migrations."""
