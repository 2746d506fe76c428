"""The news text classification contest (14-class anonymised Chinese news, macro-F1): reader, demo data, models."""
