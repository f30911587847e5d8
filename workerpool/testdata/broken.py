"""An app whose import fails, for the boot-error tests."""
raise RuntimeError("broken on purpose: database unreachable")
