// placeholder, filled in by h3
