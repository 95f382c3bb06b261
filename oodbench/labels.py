"""The canonical label encoding every loader maps to and every metric reads (DESIGN.md): 0 in-distribution,
1 OoD (the positive class), 255 ignore."""
ID_LABEL, OOD_LABEL, IGNORE_LABEL = 0, 1, 255
