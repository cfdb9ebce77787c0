"""Dataset registries on the hub side: the admin's catalog configuration and per-group
visibility, publishing a version the way DVC and GTO do, and the local-mode demo registry."""
