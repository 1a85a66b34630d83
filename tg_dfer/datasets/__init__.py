"""Datasets as manifests: the manifest format (``manifest``), the adapters that read DFEW, FERV39k,
MAFW and label CSVs into one (``adapters``), and their split-file parsing. Importing this package
loads none of them, so a stage that only reads a manifest does not depend on the adapters."""
