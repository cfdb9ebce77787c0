"""dsplatform, sandbox side (jupyter-server extension, %dsdata magics)."""
