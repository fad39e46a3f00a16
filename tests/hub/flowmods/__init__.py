"""Small flow modules that the registry tests load by name (some on purpose broken)."""
