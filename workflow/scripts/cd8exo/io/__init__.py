"""Input and output: local and public data files, tables, downloads, provenance (never imports cells/)."""
