"""One evaluation: prepare the split, the score pass (method -> score maps -> metric states, through the score
cache), thresholds, the replayed second pass, and the record (``runner.run``); precomputed maps and the plugin check."""
