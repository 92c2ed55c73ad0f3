"""Final order: features of each candidate, learned explainable fusion, MMR diversity, and the full pipeline that chains the stages."""
