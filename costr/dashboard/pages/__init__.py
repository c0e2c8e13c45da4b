"""The dashboard's pages, each a module with its routes (paths relative to the mount)."""
