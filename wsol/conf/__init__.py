"""The configuration presets Hydra composes (a package so Hydra finds them in an installed wsol)."""
