"""A package of flow modules: loading the package loads every public module inside."""
