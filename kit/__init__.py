"""PLAsTiCC-2018 submission kit: Kaggle's files -> features -> models -> blend -> class 99 -> submission.

Simulated data and derived products credit the PLAsTiCC team (DOI 10.5281/zenodo.2539456, CC BY 4.0).
"""

__version__ = "0.1.0"
