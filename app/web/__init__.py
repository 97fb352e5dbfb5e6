"""The inbox web page: a client of the JSON API, shipped inside the package (no build step)."""
