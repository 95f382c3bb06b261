"""`oodbench show`: the panel of one frame (image, labels, scores, segments before and after the meta stage)."""
