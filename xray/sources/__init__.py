"""Image sources: scan files (PNG, TIFF, JPEG, DICOS) and a scanner's drop folder, yielding `Scan`s."""
